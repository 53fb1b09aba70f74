"""What the executor does as jobs end: the ``QueueHost`` port every queue reports to.

Every job that ends is kept for ``lookup`` (the ``ResultStore`` it is given); a job that fails
for good is logged once (bounded, ``_errortext.py``), kept in the dead list
and handed to ``on_error``; one that ends after it was given up is said to have; one whose
key was unique frees it; and whoever waits for the queues to be idle (``join()``, shutdown)
is woken when they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ._errortext import error_line, log_failure
from ._failures import FailedJobs
from ._job import Job
from ._ports import ResultStore
from ._unique import UniqueKeys

__all__ = ["ErrorHook", "Outcomes", "call_on_error"]

logger = logging.getLogger("backburner")

#: ``on_error(job, exception)``: called when a job fails for good, after it is logged.
ErrorHook = Callable[[Job[Any], BaseException], object]


class Outcomes:
    """The queues' host: reports ends, keeps failures, frees unique keys, wakes idle waiters."""

    def __init__(
        self,
        failures: FailedJobs,
        unique: UniqueKeys,
        on_error: ErrorHook | None,
        busy: Callable[[], bool],
        results: ResultStore,
    ) -> None:
        """``busy()`` says whether any queue still has a job waiting or running."""
        self.results = results
        #: ``job`` reached an end state: the store's own ``keep`` (called on every job's path).
        self.keep = results.keep
        self.failures = failures
        self.unique = unique
        self.on_error = on_error
        self._busy = busy
        self._idle_waiters: list[asyncio.Future[None]] = []

    # The QueueHost port.

    def job_ended(self) -> None:
        """A job left its queue: wake the idle waiters if nothing is left."""
        if self._idle_waiters and not self._busy():
            self.wake_idle_waiters()

    def job_failed(self, job: Job[Any], exc: BaseException) -> None:
        """Report a job that failed for good: one bounded ERROR record, the dead list, on_error."""
        attempts = f" after {job.attempt} attempts" if job.attempt > 1 else ""
        contained = (
            ""
            if isinstance(exc, Exception)
            else f" ({type(exc).__name__} raised by a job is contained: it ends this job only, "
            f"and the server runs on)"
        )
        log_failure(
            logging.ERROR,
            "job %s failed%s: %s%s",
            (job.describe(attempt=False), attempts, error_line(exc), contained),
            exc,
            {"backburner_job_id": job.id, "backburner_job_name": job.name},
        )
        self.failures.add(job)
        call_on_error(self.on_error, job, exc)

    def late_end(
        self, job: Job[Any], error: BaseException | None, attempt: int | None = None
    ) -> None:
        """Say that a job given up on (abandoned, timed out) ended after all; ``attempt``,
        if given, is the attempt that ended (a retry may run meanwhile)."""
        outcome = f"raised {error_line(error)}" if error else "returned"
        logger.warning(
            "job %s %s after it was given up (abandoned or timed out)",
            job.describe()
            if attempt is None
            else f"{job.describe(attempt=False)} attempt={attempt}",
            outcome,
            extra={"backburner_job_id": job.id},
        )

    def release_unique(self, job: Job[Any]) -> None:
        """Free the unique key ``job`` holds. Any thread."""
        self.unique.release(job)

    # Waiting for the queues to be idle.

    async def wait_idle(self, until: float | None, stopped: Callable[[], bool]) -> None:
        """Wait on this loop until no queue is busy, ``stopped()``, or loop time ``until``."""
        loop = asyncio.get_running_loop()
        while self._busy():
            if stopped():
                return
            timeout = None if until is None else until - loop.time()
            if timeout is not None and timeout <= 0:
                return
            waiter = loop.create_future()
            self._idle_waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()

    def wake_idle_waiters(self) -> None:
        """Wake everyone in ``wait_idle`` to look again."""
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def call_on_error(hook: ErrorHook | None, job: Job[Any], exc: BaseException) -> None:
    """Call ``hook(job, exc)``; its own exception is logged and goes no further."""
    if hook is None:
        return
    try:
        hook(job, exc)
    except Exception as hook_error:
        log_failure(
            logging.ERROR,
            "on_error hook failed for job %s: %s",
            (job.id, error_line(hook_error)),
            hook_error,
            {"backburner_job_id": job.id},
        )
