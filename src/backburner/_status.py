"""The life of a job, as one enum."""

from __future__ import annotations

import enum

__all__ = ["JobStatus"]


class JobStatus(str, enum.Enum):
    """Where a job is in its life: waiting (scheduled, pending, retrying), running, or an end."""

    #: Accepted, and waiting for its time (``enqueue_in``/``enqueue_at``).
    SCHEDULED = "scheduled"
    #: Accepted and waiting for a free worker of its queue.
    PENDING = "pending"
    #: Held by a ``ConcurrencyLimit``: as many jobs with its key already run. It holds no
    #: worker; it becomes pending when one of them ends (``Job.held_by`` names the limit).
    BLOCKED = "blocked"
    #: Held by a ``RateLimit`` (or a limit backing off after a ``Snooze``): it waits in the
    #: scheduler, holding no worker, and becomes pending when the window allows.
    THROTTLED = "throttled"
    #: A worker is running it.
    RUNNING = "running"
    #: It returned; ``await job`` gives the value.
    SUCCEEDED = "succeeded"
    #: An attempt failed and another is scheduled after a backoff (see ``Job.attempt``).
    RETRYING = "retrying"
    #: It raised and was not to be retried; ``await job`` re-raises the exception.
    FAILED = "failed"
    #: It failed on every attempt its ``retries`` allowed; kept in the dead list.
    DEAD = "dead"
    #: Handed to a remote engine's broker (``Backburner(engine=...)``), or held by another
    #: process sharing the journal (a unique key's holder): this process's part is over, the
    #: job runs there; ``await job`` waits for its outcome.
    SENT = "sent"
    #: Cancelled by ``job.cancel()``, or by shutdown, before or while it ran.
    CANCELLED = "cancelled"
    #: Still running when shutdown's deadline passed: a sync job in its thread, or an async job
    #: that ignored cancellation. It was reported and left behind.
    ABANDONED = "abandoned"
    #: A finished job kept for ``lookup`` whose ``result_ttl`` ran out: its tombstone, kept as
    #: long again so that a client can tell "gone" from "never was". Only ``lookup`` says it.
    EXPIRED = "expired"

    #: Set on each member below: a plain attribute, read on every job's path (an enum
    #: property or a set lookup costs several times more on Python 3.10 and 3.11).
    _final: bool

    @property
    def held(self) -> bool:
        """True for the statuses of a job a limit holds: blocked and throttled."""
        return self is JobStatus.BLOCKED or self is JobStatus.THROTTLED

    @property
    def finished(self) -> bool:
        """True for the end states: succeeded, sent, failed, dead, cancelled, abandoned and
        expired."""
        return self._final

    def __str__(self) -> str:
        return str(self.value)


_FINISHED = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.SENT,
        JobStatus.FAILED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.ABANDONED,
        JobStatus.EXPIRED,
    }
)
for _member in JobStatus:
    _member._final = _member in _FINISHED
del _member
