"""Which job the current code runs in: for log records (``backburner.logs``), found at no cost
to the job's path.

An async job runs as the task of its queue's runner coroutine, which holds the job: the job
of the current task is read from that coroutine when asked (a log record), so nothing is set
per job. A sync job's function runs on a thread, where no task is current: its queue sets
``thread_job_var`` in the copy of the context the thread runs in (that path already copies a
context and hands the call to a thread; one more ``set`` costs nothing there).
"""

from __future__ import annotations

import asyncio
import contextvars
from types import CodeType
from typing import Any

from ._job import Job

__all__ = ["current_job", "register_runner", "thread_job_var"]

#: The job a sync job's thread runs (set in the context the thread runs in).
thread_job_var: contextvars.ContextVar[Job[Any]] = contextvars.ContextVar("backburner_job")

# The code of each coroutine that runs a job as its task, and the name of its argument that
# holds the job (a queue registers its runner when its module is imported).
_runners: dict[CodeType, str] = {}


def register_runner(code: CodeType, argument: str) -> None:
    """Record that a task running ``code`` runs the job held by its argument ``argument``."""
    if argument not in code.co_varnames[: code.co_argcount]:
        raise ValueError(f"{code.co_name} has no argument {argument!r}")
    _runners[code] = argument


def current_job() -> Job[Any] | None:
    """The job whose code is running here (on its task or its thread), or None.

    The task's runner first: a job enqueued from a sync job's thread copies that thread's
    context, ``thread_job_var`` included, and must not be taken for its parent.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop runs in this thread: a sync job's, or none
        task = None
    if task is not None:
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        argument = _runners.get(code) if code is not None else None
        frame = getattr(coro, "cr_frame", None)
        if argument is not None and frame is not None:
            found = frame.f_locals.get(argument)
            if isinstance(found, Job):
                return found
    # A sync job's thread; or a job run inline by backburner.testing, on a task of its own.
    return thread_job_var.get(None)
