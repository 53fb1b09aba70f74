"""One heap of timed calls, one armed clock timer: delayed jobs, retries, ticks and timeouts.

A scheduled call costs one heap entry, never a task or an event-loop timer of its own: the
clock is asked to wake the scheduler only for the earliest entry. Entries may be pushed from
any thread. A cancelled entry stays in the heap until it comes up or until cancelled entries
outnumber live ones, when the heap is rebuilt (asyncio's own timer heap works the same way).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from ._clock import Clock, TimerHandle

__all__ = ["Scheduler", "Timer"]

logger = logging.getLogger("backburner")

_COMPACT_AFTER = 1024


class Timer:
    """One scheduled call; ``cancel()`` takes it back."""

    __slots__ = ("_scheduler", "arg", "callback", "cancelled")

    def __init__(self, scheduler: Scheduler, callback: Callable[[Any], None], arg: Any) -> None:
        self._scheduler = scheduler
        self.callback = callback
        self.arg = arg
        self.cancelled = False

    def cancel(self) -> None:
        """Make sure the call does not happen (if it has not happened yet)."""
        if not self.cancelled:
            self.cancelled = True
            self._scheduler._note_cancelled()


class Scheduler:
    """Calls ``callback(arg)`` on the loop's thread once the clock reaches ``when``."""

    def __init__(self, clock: Clock, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = clock
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._heap: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._cancelled = 0
        self._armed: TimerHandle | None = None
        self._armed_when = math.inf
        self._closed = False

    def __len__(self) -> int:
        """How many calls are still to come."""
        return len(self._heap) - self._cancelled

    def call_at(self, when: float, callback: Callable[[Any], None], arg: Any) -> Timer:
        """Schedule ``callback(arg)`` for clock time ``when``. Safe from any thread."""
        timer = Timer(self, callback, arg)
        with self._lock:
            heapq.heappush(self._heap, (when, next(self._sequence), timer))
            sooner = when < self._armed_when
        if sooner and not self._closed:
            if threading.get_ident() == self._loop_thread:
                self._arm()
            else:
                self._loop.call_soon_threadsafe(self._arm)
        return timer

    def entries(self) -> list[tuple[float, Timer]]:
        """A snapshot of the calls still to come, as ``(when, timer)``, in no order. Any thread.

        O(n): a copy of the heap taken under the lock, for inspection (the dashboard).
        """
        with self._lock:
            heap = list(self._heap)
        return [(when, timer) for when, _, timer in heap if not timer.cancelled]

    def soonest(
        self, accept: Callable[[Timer], bool], count: int, max_visits: int
    ) -> tuple[list[tuple[float, Timer]], bool]:
        """The ``count`` soonest calls still to come whose timer ``accept`` takes, soonest
        first, as ``(when, timer)``; and False if the walk stopped after ``max_visits``
        entries, before it had seen every call that could be among them. Any thread.

        A best-first walk of the heap under the lock (a heap's children are never sooner than
        their parent): O(v log v) for the v entries visited, v <= ``max_visits``, whatever
        the heap's size. ``accept`` runs under the lock: it must be cheap and take no lock.
        """
        found: list[tuple[float, Timer]] = []
        if count <= 0:
            return found, True
        with self._lock:
            heap = self._heap
            size = len(heap)
            frontier = [(heap[0], 0)] if heap else []
            visits = 0
            while frontier:
                if visits >= max_visits:
                    return found, False
                visits += 1
                (when, _, timer), index = heapq.heappop(frontier)
                if not timer.cancelled and accept(timer):
                    found.append((when, timer))
                    if len(found) >= count:
                        break
                for child in (2 * index + 1, 2 * index + 2):
                    if child < size:
                        heapq.heappush(frontier, (heap[child], child))
        return found, True

    def close(self) -> list[Any]:
        """Stop firing; return the ``arg`` of every call that will now never happen."""
        self._closed = True
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        with self._lock:
            left = [timer.arg for _, _, timer in sorted(self._heap) if not timer.cancelled]
            self._heap.clear()
            self._cancelled = 0
        return left

    def _arm(self) -> None:
        if self._closed:
            return
        with self._lock:
            if not self._heap:
                return
            when = self._heap[0][0]
            if self._armed is not None and self._armed_when <= when:
                return
            self._armed_when = when
        if self._armed is not None:
            self._armed.cancel()
        self._armed = self.clock.call_at(when, self._fire, self._loop)

    def _fire(self) -> None:
        self._armed = None
        now = self.clock.now()
        due: list[Timer] = []
        with self._lock:
            self._armed_when = math.inf
            while self._heap and self._heap[0][0] <= now:
                timer = heapq.heappop(self._heap)[2]
                if timer.cancelled:
                    self._cancelled -= 1
                else:
                    due.append(timer)
        if due:
            # In an empty context, not the one that armed the clock's timer (a request's,
            # say): a periodic tick's job must not inherit a stranger's context variables
            # (its trace among them).
            contextvars.Context().run(_call_all, due)
        self._arm()

    def _note_cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1
            if self._cancelled > _COMPACT_AFTER and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0


def _call_all(due: list[Timer]) -> None:
    for timer in due:
        timer.cancelled = True  # fired: a late cancel() must not count it again
        try:
            timer.callback(timer.arg)
        except Exception:
            logger.exception("a scheduled call failed: %r", timer.callback)
