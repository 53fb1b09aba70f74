"""Which job the current code runs in: for log records (``backburner.logs``).

Each attempt's task sets ``job_var`` to the job (or ``(job, attempt)``) before the job's code
runs, in the job's own context (each job runs in a context of its own, see ``_queue.py``).
Whatever the job's code starts from there inherits it as any context variable: tasks it creates
(``asyncio.gather``, a task group, ``wait_for`` on Python < 3.12), threads it hands work to
(``asyncio.to_thread``, anyio's ``to_thread.run_sync``), a sync job's own thread (its context
is a copy of the task's). It is not reset when the attempt ends: the context is the job's own
and dies with its task (a job that ends lets go of both, so the job, its context and its task
form no reference cycle), and a retry's next attempt sets it anew. One ``set`` per attempt
(tens of nanoseconds, against microseconds a job); a record pays one ``get``.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ._job import Job

__all__ = ["current_attempt", "current_job", "job_var"]

#: The job whose code runs in this context (set by its queue when the attempt starts), with
#: the attempt it belongs to where that attempt may be outlived: the thread of a timed-out
#: sync job runs on, and must not say it is the retry's. A plain async job's attempt is the
#: job's own (its task ends with it): it sets the job alone, with no tuple to allocate.
job_var: contextvars.ContextVar[Job[Any] | tuple[Job[Any], int]] = contextvars.ContextVar(
    "backburner_job"
)


def current_job() -> Job[Any] | None:
    """The job whose code is running here (its task, a task or thread it started), or None."""
    found = job_var.get(None)
    return found[0] if isinstance(found, tuple) else found


def current_attempt() -> tuple[Job[Any], int] | None:
    """The job whose code is running here and the attempt (from 1) this code belongs to."""
    found = job_var.get(None)
    if found is None or isinstance(found, tuple):
        return found
    return found, found.attempt
