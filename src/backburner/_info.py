"""``JobInfo``: what ``lookup(job_id)`` answers, an immutable snapshot of a job at one moment."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._progress import Progress
from ._status import JobStatus

__all__ = ["NO_META", "JobInfo"]

#: The ``meta`` of a job enqueued without one.
NO_META: Mapping[str, Any] = types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as ``lookup`` found it: nothing here changes when the job moves on.

    Times are wall-clock seconds (``time.time()``); ``expires_at`` is on the executor's clock
    (the same timeline, unless a test moves a ``ManualClock``).
    """

    #: The job's id, as ``Job.id``.
    id: str
    #: The function's qualified name.
    name: str
    #: The queue it was sent to.
    queue: str
    #: Where it is: any ``JobStatus``, ``EXPIRED`` for the tombstone of a finished job.
    status: JobStatus
    #: The attempt running or last run: 1 for the first, 0 before it.
    attempt: int
    #: The latest ``set_progress`` report of its current (or last) attempt; None if none.
    progress: Progress | None
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    #: The return value, if the job succeeded and its result is kept (see ``has_result``).
    result: Any
    #: True if ``result`` is the job's return value; False if it has none yet, or it was not
    #: kept (``@job(keep_result=False)``, larger than ``max_result_bytes``, expired).
    has_result: bool
    #: The error of a failed job (or of the last failed attempt of a retrying one), bounded.
    error: str | None
    #: What ``options(meta={...})`` gave at enqueue (read-only); empty if nothing.
    meta: Mapping[str, Any]
    #: A pending job's place among its queue's waiting jobs (0: next to start); else None.
    position: int | None
    #: When a kept finished job becomes a tombstone, or a tombstone is forgotten; else None.
    expires_at: float | None

    @property
    def finished(self) -> bool:
        """True once the job has ended (an expired tombstone too)."""
        return self.status.finished
