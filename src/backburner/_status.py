"""The life of a job, as one enum."""

from __future__ import annotations

import enum

__all__ = ["JobStatus"]


class JobStatus(str, enum.Enum):
    """Where a job is in its life. A job moves forward only: pending, running, then one end."""

    #: Accepted and waiting for a free worker of its queue.
    PENDING = "pending"
    #: A worker is running it.
    RUNNING = "running"
    #: It returned; ``await job`` gives the value.
    SUCCEEDED = "succeeded"
    #: It raised; ``await job`` re-raises the exception.
    FAILED = "failed"
    #: Cancelled by ``job.cancel()``, or by shutdown, before or while it ran.
    CANCELLED = "cancelled"
    #: Still running when shutdown's deadline passed: a sync job in its thread, or an async job
    #: that ignored cancellation. It was reported and left behind.
    ABANDONED = "abandoned"

    @property
    def finished(self) -> bool:
        """True for the end states: succeeded, failed, cancelled and abandoned."""
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)

    def __str__(self) -> str:
        return self.value
