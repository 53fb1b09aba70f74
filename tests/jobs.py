"""The small jobs many tests enqueue: one that does nothing, one that adds, one that fails, one
that returns what it was given, and a gate that holds jobs until the test opens it; and
``time_out_first_attempt``, which times out a hanging first attempt on a ManualClock.

Plain functions, not ``@job``s: the logs and the dashboard show them by their own names
(``noop``, ``fail('boom')``), which tests read. Jobs another process must find by a registered
name are in ``tests/journal_jobs.py`` and ``tests/remote/jobs.py``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from backburner.testing import ManualClock

__all__ = ["Gate", "add", "echo", "fail", "noop", "time_out_first_attempt"]

T = TypeVar("T")


async def noop(*args: Any, **kwargs: Any) -> None:
    """Take any arguments and do nothing."""


async def add(a: int, b: int) -> int:
    """An async job with a result."""
    return a + b


async def echo(value: T) -> T:
    """Return ``value``: a job whose result tells which call it was."""
    return value


async def fail(message: str) -> None:
    """Always fail, with ``ValueError(message)``."""
    raise ValueError(message)


class Gate:
    """Jobs that run until the test opens the gate, and tell when one has started.

    Make one inside the test (its events belong to the test's event loop).
    """

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started = asyncio.Event()

    async def hold(self) -> None:
        """Say it started, then wait until the test sets ``opened``."""
        self.started.set()
        await self.opened.wait()


async def time_out_first_attempt(clock: ManualClock, started: threading.Event) -> None:
    """Time out the first attempt of a sync job enqueued with ``timeout=1, retries=1,
    backoff=1, jitter=0`` on ``clock``, whose thread sets ``started`` and then hangs: once it
    has started, move the clock past the timeout (the thread runs on) and let the queue settle.
    The retry is then due in a second of ``clock``; the test advances it."""
    await anyio.to_thread.run_sync(started.wait, 10)
    clock.advance(1)
    await anyio.wait_all_tasks_blocked()
