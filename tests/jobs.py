"""The small jobs many tests enqueue: one that does nothing, one that adds, one that fails, one
that returns what it was given, and a gate that holds jobs until the test opens it.

Plain functions, not ``@job``s: the logs and the dashboard show them by their own names
(``noop``, ``fail('boom')``), which tests read. Jobs another process must find by a registered
name are in ``tests/journal_jobs.py`` and ``tests/remote/jobs.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

__all__ = ["Gate", "add", "echo", "fail", "noop"]

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
