"""``current_job()``: the running job's own handle, from inside its code.

The job is found as log records find theirs (``_current.py``): from the context variable its
queue sets when an attempt starts, which the tasks and threads the job starts inherit. The
handle is then kept in a context variable of the job's own context, so that later calls in the
same attempt are one read and one comparison. A job's context is
copied into the jobs it enqueues, so a handle found there is checked to be this task's (or, on
a thread, this job's attempt) before it is trusted.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections.abc import Mapping
from typing import Any

from ._current import current_attempt
from ._errors import NotInJob
from ._info import NO_META
from ._job import Job
from ._progress import MAX_MESSAGE, NUMBERS, Progress, ProgressCell, check_report

__all__ = ["CurrentJob", "current_job"]

# (whose it is: the task, or on a thread the job; the attempt; the handle)
_handle_var: contextvars.ContextVar[tuple[object, int, CurrentJob]] = contextvars.ContextVar(
    "backburner_handle"
)
_current_task = asyncio.current_task
_now = time.time
# The largest finite float: an int past it (10**400) cannot be a float, and would break every
# reader's arithmetic (the rate, the ETA, the JSON of the status app) with OverflowError.
_MAX = sys.float_info.max


class CurrentJob:
    """The running job, from inside its own code: its identity, and a way to report progress.

    Got from ``backburner.current_job()``; one per attempt. ``set_progress`` may be called from
    the job's task or its thread (a sync job), as often as the job likes: each call costs well
    under a microsecond and only the latest report is kept.
    """

    __slots__ = ("_cell", "_job")

    def __init__(self, job: Job[Any]) -> None:
        self._job = job
        self._cell: ProgressCell = job.progress_cell()

    @property
    def id(self) -> str:
        """The job's id (``Job.id``): what ``lookup`` and the dashboard find it by."""
        return self._job.id

    @property
    def name(self) -> str:
        """The function's qualified name."""
        return self._job.name

    @property
    def queue(self) -> str:
        """The name of the queue the job runs on."""
        return self._job.queue

    @property
    def attempt(self) -> int:
        """The number of this attempt: 1 for the first, 2 for the first retry, ..."""
        return self._cell.attempt

    @property
    def meta(self) -> Mapping[str, Any]:
        """What ``options(meta={...})`` gave at enqueue, read-only (empty if nothing)."""
        meta = self._job.options.meta
        return NO_META if meta is None else meta

    @property
    def progress(self) -> Progress | None:
        """The latest report of this attempt, or None before the first."""
        return self._cell.snapshot()

    def set_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Say how far the job has come: ``done`` out of ``total`` (None: unknown), and what
        it is doing (``message``).

        Never blocks and wakes nobody: the latest report is kept for whoever looks
        (``lookup``, the dashboard). ``done`` and ``total`` are finite numbers, 0 or more,
        ``done`` at most ``total``; ``message`` a str of at most 1,000 characters that UTF-8
        can encode (no lone surrogates). Anything else raises ``TypeError`` or ``ValueError``
        here. The ETA (``Progress.eta``) comes from the rate since this attempt's first report.
        """
        # The common case checked inline (an exact int or float, finite, in order): a call in
        # a tight loop must stay well under a microsecond. Anything else takes check_report,
        # which converts what it accepts and refuses the rest.
        if (
            type(done) not in NUMBERS
            or not 0 <= done <= _MAX
            or (total is not None and (type(total) not in NUMBERS or not done <= total <= _MAX))
            or (
                message is not None
                and (
                    type(message) is not str
                    or len(message) > MAX_MESSAGE
                    # (Only text beyond ASCII can hold a lone surrogate: check_report looks.)
                    or not message.isascii()
                )
            )
        ):
            done, total, message = check_report(done, total, message)
        now = _now()
        cell = self._cell
        cell.latest = (done, total, message, now)  # one assignment: atomic for any reader
        if cell.first is None:
            cell.first = (done, now)

    def __repr__(self) -> str:
        job = self._job
        return f"<CurrentJob {job.id} {job.name} queue={job.queue!r} attempt={self.attempt}>"


def current_job() -> CurrentJob:
    """The handle of the job whose code is running: in an async job, or a sync job's thread.

    Raises ``NotInJob`` anywhere else (a request handler, a task or thread the application
    started itself, code run before or after any job, the thread of an attempt that timed out
    and runs on).
    """
    try:
        task = _current_task()
    except RuntimeError:  # no event loop in this thread: a sync job's, or none
        task = None
    cached = _handle_var.get(None)
    if task is not None and cached is not None and cached[0] is task:
        return cached[2]
    found = current_attempt()
    job = None if found is None else found[0]
    # (The attempt this code belongs to: a timed-out sync job's thread runs on past it, and
    # must not report as the retry.)
    if found is None or job is None or job.done() or found[1] != job.attempt:
        raise NotInJob(
            "current_job() is for the code of a running job (an async job on the event loop, "
            "or a sync job on its thread), and no job runs this code. Call it in the job's "
            "function, or pass what it needs to the code that is not a job's"
        )
    if task is None and cached is not None and cached[0] is job and cached[1] == job.attempt:
        return cached[2]
    handle = CurrentJob(job)
    _handle_var.set((job if task is None else task, job.attempt, handle))
    return handle
