"""What a shutdown left undone, as one value and one log record."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ._job import Job

__all__ = ["ShutdownReport"]

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
        """Write the report as one log record: a warning that lists every unfinished job."""
        if not self.unfinished:
            logger.info("shut down in %.2fs; every accepted job finished", self.elapsed)
            return
        kept = (
            f"; they are kept in the journal {self.journal} and run at the next start"
            if self.journal is not None
            else ""
        )
        lines = [
            f"  {kind:<11} {job.describe()}"
            for kind, jobs in (
                ("abandoned", self.abandoned),
                ("cancelled", self.cancelled),
                ("not started", self.not_started),
                ("scheduled", self.scheduled),
            )
            for job in jobs
        ]
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
                "backburner_unfinished": [
                    {"id": job.id, "name": job.name, "queue": job.queue, "status": str(job.status)}
                    for job in self.unfinished
                ]
            },
        )
