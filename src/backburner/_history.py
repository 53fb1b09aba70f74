"""The last minutes of each queue's activity, sampled every few seconds: the dashboard's charts.

One timer on the executor's clock (not a scheduler entry: it must not count against
``max_scheduled``) reads each queue's cumulative counters every ``interval`` seconds and keeps
the differences for the last ``window`` seconds. Nothing on the per-job path changes for it
but two additions where a job starts (``JobQueue.wait_totals``).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._clock import Clock, TimerHandle

if TYPE_CHECKING:
    from ._ports import Queue as JobQueue
    from ._stats import QueueStats

__all__ = ["History", "Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One queue's activity over one interval, ending at clock time ``at``."""

    at: float
    #: The interval's length in seconds (the first one after a start may be shorter).
    seconds: float
    #: Jobs that ended (``failed`` of them by raising) and jobs that started, in the interval.
    processed: int
    failed: int
    started: int
    #: The mean seconds the jobs started in the interval waited for a worker; None if none did.
    wait: float | None
    #: Jobs waiting and jobs running at the end of the interval.
    pending: int
    busy: int


@dataclass(slots=True)
class _Totals:
    processed: int
    failed: int
    started: int
    waited: float


class History:
    """Samples of every queue's counters, every ``interval`` seconds, for ``window`` seconds."""

    def __init__(self, interval: float = 5.0, window: float = 600.0) -> None:
        if not (0 < interval <= window and math.isfinite(window)):
            raise ValueError(
                f"need 0 < interval <= window (finite), got interval={interval}, window={window}"
            )
        self.interval = interval
        self.window = window
        self._size = math.ceil(window / interval)
        self._series: dict[str, deque[Sample]] = {}
        self._last: dict[str, _Totals] = {}
        self._last_at = 0.0
        self._clock: Clock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: Callable[[], Iterable[JobQueue]] = tuple
        self._timer: TimerHandle | None = None
        self._next_at = -math.inf
        self._also: Callable[[], None] | None = None

    def start(
        self,
        clock: Clock,
        loop: asyncio.AbstractEventLoop,
        queues: Callable[[], Iterable[JobQueue]],
        also: Callable[[], None] | None = None,
    ) -> None:
        """Forget what was kept (counters start again with the executor) and sample from now;
        ``also`` is called after each sample (other upkeep that is due every few seconds)."""
        self.stop()
        self._clock, self._loop, self._queues, self._also = clock, loop, queues, also
        self._series.clear()
        self._last.clear()
        self._last_at = clock.now()
        self._next_at = -math.inf
        for queue in queues():
            self._last[queue.name] = _totals(queue, queue.stats())
        self._arm()

    def stop(self) -> None:
        """Take no more samples; what was kept stays readable."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def series(self) -> dict[str, list[Sample]]:
        """Each queue's samples, oldest first."""
        return {name: list(samples) for name, samples in self._series.items()}

    def sample(self) -> None:
        """Take one sample of every queue now (the timer calls this)."""
        assert self._clock is not None
        now = self._clock.now()
        seconds = now - self._last_at
        if seconds <= 0:
            return
        self._last_at = now
        for queue in self._queues():
            stats = queue.stats()
            totals = _totals(queue, stats)
            before = self._last.get(queue.name, totals)
            self._last[queue.name] = totals
            started = totals.started - before.started
            waited = totals.waited - before.waited
            # A job that waited in the schedule has its wait rebased when it comes due, which
            # may fall in the interval before it starts: never show a negative mean.
            wait = max(0.0, waited / started) if started > 0 else None
            series = self._series.get(queue.name)
            if series is None:
                series = self._series[queue.name] = deque(maxlen=self._size)
            series.append(
                Sample(
                    at=now,
                    seconds=seconds,
                    processed=totals.processed - before.processed,
                    failed=totals.failed - before.failed,
                    started=started,
                    wait=wait,
                    pending=stats.pending,
                    busy=stats.busy,
                )
            )

    def _arm(self) -> None:
        assert self._clock is not None
        assert self._loop is not None
        # On a grid, like `every` periodic jobs: samples line up across queues and restarts.
        when = (math.floor(self._clock.now() / self.interval) + 1) * self.interval
        # A loop timer may fire a little before its time (the loop's clock is not the wall
        # clock): never aim at the grid point just sampled again.
        when = max(when, self._next_at + self.interval)
        self._next_at = when
        self._timer = self._clock.call_at(when, self._tick, self._loop)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.sample()
            if self._also is not None:
                self._also()
        finally:
            self._arm()


def _totals(queue: JobQueue, stats: QueueStats) -> _Totals:
    started, waited = queue.wait_totals()
    return _Totals(stats.processed, stats.failed, started, waited)
