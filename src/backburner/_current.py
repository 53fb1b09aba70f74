"""Which job the current code runs in: for log records (``backburner.logs``).

Each attempt's task sets ``job_var`` to ``(job, attempt)`` (an async job's first attempt: to
the job alone, read as attempt 1) before the job's code runs, in the job's own context (each
job runs in a context of its own, see ``_queue.py``). Whatever the job's code starts from
there inherits it as any context variable: tasks it creates
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
#: the attempt it belongs to: the thread of a timed-out sync job runs on, and so may a task
#: an async job's attempt started and never awaited, and neither may say it is the retry's.
#: An async job's first attempt sets the job alone, which means attempt 1: no tuple to
#: allocate for the many jobs that run once.
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
    return found, 1  # (the job alone: its first attempt's, which a retry may outlive)
