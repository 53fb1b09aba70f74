"""Snapshots of an executor's counters, as frozen dataclasses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutorStats", "QueueStats"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's counters at one moment (like ``SuckerPunch::Queue.stats``)."""

    name: str
    #: Worker slots, and how many are running a job / free.
    workers: int
    busy: int
    idle: int
    #: Jobs accepted and waiting for a free worker.
    pending: int
    #: Jobs that ran to an end, successful or not; ``failed`` of them raised.
    processed: int
    failed: int
    #: Jobs cancelled before or while running (by ``job.cancel()`` or by shutdown).
    cancelled: int

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ExecutorStats:
    """Every queue's counters, and their sum under the name ``"total"``."""

    queues: Mapping[str, QueueStats]
    total: QueueStats

    @classmethod
    def of(cls, queues: list[QueueStats]) -> ExecutorStats:
        """Sum the queues' snapshots into a total."""
        fields = ("workers", "busy", "idle", "pending", "processed", "failed", "cancelled")
        sums = {field: sum(getattr(q, field) for q in queues) for field in fields}
        return cls(queues={q.name: q for q in queues}, total=QueueStats(name="total", **sums))

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict: ``{"queues": {name: {...}}, "total": {...}}``."""
        return {
            "queues": {name: q.as_dict() for name, q in self.queues.items()},
            "total": self.total.as_dict(),
        }
