"""The one clock every time-based feature reads: delays, periodic jobs, retries, timeouts.

Tests replace it with ``backburner.testing.ManualClock`` and move time forward themselves,
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What ``Clock.call_at`` returns: a way to take the call back."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time, and a way to be called back at a given time on the event loop."""

    def now(self) -> float:
        """Seconds since the Unix epoch, like ``time.time()``."""
        ...

    def call_at(
        self, when: float, callback: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> TimerHandle:
        """Call ``callback()`` on ``loop``'s thread once ``now() >= when``."""
        ...


class SystemClock:
    """The real clock: ``time.time()``, and the event loop's own timers."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def call_at(
        self, when: float, callback: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> TimerHandle:
        """Call ``callback()`` on ``loop`` about ``when - now()`` seconds from now."""
        return loop.call_later(max(0.0, when - time.time()), callback)

    def __repr__(self) -> str:
        return "SystemClock()"
