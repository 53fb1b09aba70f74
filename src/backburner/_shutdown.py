"""Shutdown: draining the queues within a deadline, and what it left undone as one report."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._job import Job
from ._ports import Queue
from ._scheduler import Scheduler
from ._status import JobStatus

__all__ = ["ShutdownReport", "drain"]

_TIMED = (JobStatus.SCHEDULED, JobStatus.RETRYING)

logger = logging.getLogger("backburner")


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """The outcome of ``aclose()``: every job that did not finish, by what became of it."""

    #: Jobs waiting for their time (delayed, or waiting to retry): they will not run.
    scheduled: tuple[Job[Any], ...] = ()
    #: Jobs still waiting for a worker when the deadline came: they never ran.
    not_started: tuple[Job[Any], ...] = ()
    #: Jobs that were running, were cancelled at the deadline, and stopped.
    cancelled: tuple[Job[Any], ...] = ()
    #: Jobs still running after cancellation: sync jobs in their threads, or async jobs that
    #: ignored cancellation. They were left behind.
    abandoned: tuple[Job[Any], ...] = ()
    #: Seconds the shutdown took, from ``aclose()`` to this report.
    elapsed: float = 0.0
    #: For a journaled executor, the journal's path: every unfinished job above is kept there
    #: (released, not lost) and runs at the next start, in this process or another.
    journal: str | None = None

    @property
    def unfinished(self) -> tuple[Job[Any], ...]:
        """Every job the shutdown left undone."""
        return self.scheduled + self.not_started + self.cancelled + self.abandoned

    def log(self, shutdown_timeout: float) -> None:
        """Write the report as one log record: a warning that lists every unfinished job.

        The text is for a terminal (a summary line, then one indented line per job); the same
        facts are the record's ``extra`` fields, for JSON logs: ``backburner_elapsed``,
        ``backburner_shutdown_timeout``, ``backburner_counts`` (jobs by what became of them),
        ``backburner_journal`` and ``backburner_unfinished`` (id, name, queue, status and
        ``kind`` of each job; never its arguments).
        """
        kinds = (
            ("abandoned", self.abandoned),
            ("cancelled", self.cancelled),
            ("not started", self.not_started),
            ("scheduled", self.scheduled),
        )
        extra = {
            "backburner_elapsed": round(self.elapsed, 3),
            "backburner_shutdown_timeout": shutdown_timeout,
            "backburner_counts": {kind.replace(" ", "_"): len(jobs) for kind, jobs in kinds},
            "backburner_journal": self.journal,
        }
        if not self.unfinished:
            logger.info(
                "shut down in %.2fs; every accepted job finished", self.elapsed, extra=extra
            )
            return
        kept = (
            f"; they are kept in the journal {self.journal} and run at the next start"
            if self.journal is not None
            else ""
        )
        lines = [f"  {kind:<11} {job.describe()}" for kind, jobs in kinds for job in jobs]
        logger.warning(
            "shut down in %.2fs (shutdown_timeout=%.1fs) with %d unfinished jobs "
            "(%d abandoned still running, %d cancelled while running, %d never started, "
            "%d scheduled or waiting to retry)%s:\n%s",
            self.elapsed,
            shutdown_timeout,
            len(self.unfinished),
            len(self.abandoned),
            len(self.cancelled),
            len(self.not_started),
            len(self.scheduled),
            kept,
            "\n".join(lines),
            extra={
                **extra,
                "backburner_unfinished": [
                    {
                        "id": job.id,
                        "name": job.name,
                        "queue": job.queue,
                        "status": str(job.status),
                        "kind": kind.replace(" ", "_"),
                    }
                    for kind, jobs in kinds
                    for job in jobs
                ],
            },
        )


async def drain(
    queues: Sequence[Queue],
    scheduler: Scheduler,
    *,
    deadline: float,
    cancel_grace: float,
    wait_idle: Callable[[float], Awaitable[None]] | None,
    keep_unfinished: Callable[[], None] | None = None,
) -> tuple[list[Job[Any]], list[Job[Any]], list[Job[Any]]]:
    """Run the queues down by loop time ``deadline``; return what was left undone.

    Until ``deadline - cancel_grace`` jobs run and waiting jobs keep starting (``wait_idle``,
    None if the executor never started); then waiting, scheduled and retrying jobs are
    dropped and running ones cancelled, and get the rest of the budget to clean up; what
    still runs then is abandoned. ``keep_unfinished`` (a journal's) is called before anything
    is cut short. Returns (scheduled, not started, ran: cancelled or abandoned).
    """
    loop = asyncio.get_running_loop()
    for queue in queues:
        queue.stop_accepting_waiters()
    if wait_idle is not None:
        await wait_idle(deadline - cancel_grace)
    if keep_unfinished is not None:
        keep_unfinished()  # what shutdown cuts short stays in the journal
    scheduled = _drop_scheduled(queues, scheduler)
    not_started = [job for queue in queues for job in queue.take_pending()]
    running = [job for queue in queues for job in queue.running_jobs()]
    tasks = [task for queue in queues for task in queue.cancel_running()]
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
    for queue in queues:
        queue.abandon_running()  # ignored their cancellation: leave them, say so
    scheduled += _drop_scheduled(queues, scheduler)  # retries failing jobs asked for meanwhile
    return scheduled, not_started, running


def report(
    scheduled: list[Job[Any]],
    not_started: list[Job[Any]],
    ran: list[Job[Any]],
    elapsed: float,
    journal: str | None,
) -> ShutdownReport:
    """The report of a ``drain``."""
    return ShutdownReport(
        scheduled=tuple(scheduled),
        not_started=tuple(not_started),
        cancelled=tuple(j for j in ran if j.status is JobStatus.CANCELLED),
        abandoned=tuple(j for j in ran if j.status is JobStatus.ABANDONED),
        elapsed=elapsed,
        journal=journal,
    )


def _drop_scheduled(queues: Sequence[Queue], scheduler: Scheduler) -> list[Job[Any]]:
    # The jobs waiting for their time; a running job's timeout is an entry too (not one).
    jobs = [job for job in scheduler.close() if isinstance(job, Job) and job.status in _TIMED]
    for queue in queues:
        queue.drop_scheduled([job for job in jobs if job.queue == queue.name])
    return jobs
