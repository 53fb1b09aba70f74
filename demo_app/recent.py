"""The last few requests that sent mail, with their mode and server-side response time."""

from __future__ import annotations

import itertools
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from backburner import Job

__all__ = ["MODES", "Mode", "ModeSummary", "RecentRequests", "RequestRecord"]

#: ``background``: the request enqueues a job and answers; ``inline``: it does the work first.
Mode = Literal["background", "inline"]
MODES: tuple[Mode, ...] = ("background", "inline")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: what it asked for, how it ran, and how long the server took to answer."""

    id: int
    kind: Literal["sign-up", "fibtastic"]
    address: str
    mode: Mode
    elapsed_ms: float
    #: For fibtastic, how many numbers; else 0.
    count: int = 0
    #: The job the request enqueued (background mode only).
    job: Job[Any] | None = None
    #: For a sign-up in the background, the reminder it scheduled (if reminders are on).
    reminder: Job[Any] | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class ModeSummary:
    """Response times of the recent requests of one mode."""

    mode: Mode
    requests: int
    last_ms: float | None
    median_ms: float | None


class RecentRequests:
    """The newest ``keep`` requests; all on the event loop's thread, so no locking."""

    def __init__(self, keep: int = 20) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=keep)
        self._ids = itertools.count(1)

    def add(
        self,
        kind: Literal["sign-up", "fibtastic"],
        address: str,
        mode: Mode,
        started: float,
        *,
        count: int = 0,
        job: Job[Any] | None = None,
        reminder: Job[Any] | None = None,
    ) -> RequestRecord:
        """Record a request that began at ``started`` (``time.perf_counter()``) and ends now."""
        record = RequestRecord(
            id=next(self._ids),
            kind=kind,
            address=address,
            mode=mode,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            count=count,
            job=job,
            reminder=reminder,
        )
        self._records.append(record)
        return record

    def get(self, record_id: int) -> RequestRecord | None:
        """The record with this id, if it is still kept."""
        return next((r for r in self._records if r.id == record_id), None)

    def newest_first(self) -> list[RequestRecord]:
        """The kept records, newest first."""
        return list(reversed(self._records))

    def summary(self, mode: Mode) -> ModeSummary:
        """Response times of the kept requests of ``mode``."""
        times = [r.elapsed_ms for r in self._records if r.mode == mode]
        return ModeSummary(
            mode=mode,
            requests=len(times),
            last_ms=times[-1] if times else None,
            median_ms=statistics.median(times) if times else None,
        )
