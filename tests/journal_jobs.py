"""Jobs registered by name for the journal tests: module-level, so a journal can find them again.
And ``NoRecovery``, the recoverer of a journal written to directly, with no queues behind it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from backburner import current_job, job
from backburner._journal._owners import ClaimedRow

#: What the jobs below were called with, in order.
calls: list[tuple[str, Any]] = []
#: Set once ``counted`` has run this many times (``counted_target``).
counted_enough = threading.Event()
counted_target = [0]
#: Events ``blocks`` sets when it starts, by key (made by the test, on its own loop).
started: dict[str, asyncio.Event] = {}


@job(name="tests.record")
async def record(value: Any) -> Any:
    calls.append(("record", value))
    return value


@job(name="tests.record_sync")
def record_sync(value: Any, *, label: str = "sync") -> None:
    calls.append((label, value))


class Flaky(Exception):
    """Raised by ``fails_once`` on its first attempt."""


@job(name="tests.fails_first", retries=2, backoff=30, jitter=0)
async def fails_first(value: int) -> int:
    calls.append(("fails_first", value))
    if len([c for c in calls if c[0] == "fails_first"]) == 1:
        raise Flaky("first attempt fails")
    return value


@job()
async def default_named(value: int) -> int:
    calls.append(("default_named", value))
    return value


@job(name="tests.tick")
async def tick() -> None:
    calls.append(("tick", None))


@job(name="tests.counted")
def counted(value: int) -> None:
    calls.append(("counted", value))
    if len(calls) >= counted_target[0]:
        counted_enough.set()


@job(name="tests.reads_its_row")
def reads_its_row(path: str, marker: str) -> None:
    """Records what the journal says of this job while it runs (its row, found by argument)."""
    connection = sqlite3.connect(path)
    try:
        calls.append(
            (
                "reads_its_row",
                connection.execute(
                    "SELECT state, attempt FROM jobs WHERE payload LIKE ?", (f'%"{marker}"%',)
                ).fetchall(),
            )
        )
    finally:
        connection.close()


@job(name="tests.blocks")
async def blocks(key: str) -> None:
    started[key].set()
    await asyncio.sleep(60)


async def not_registered(value: int) -> int:
    return value


#: Released by a test to let ``holds_key`` end.
key_free: dict[str, asyncio.Event] = {}


@job(name="tests.fails_with")
async def fails_with(message: str) -> None:
    raise ValueError(message)


class Unprintable(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


@job(name="tests.fails_unprintably")
async def fails_unprintably() -> None:
    raise Unprintable


@job(name="tests.fails_keyed", unique=lambda key: f"keyed:{key}")
async def fails_keyed(key: str) -> None:
    calls.append(("fails_keyed", key))
    raise Flaky(f"{key} fails")


@job(name="tests.holds_key", unique=lambda key: f"keyed:{key}")
async def holds_key(key: str) -> None:
    calls.append(("holds_key", key))
    await key_free[key].wait()


@job(name="tests.reports")
async def reports(key: str) -> dict[str, Any]:
    """Says how far it is, waits for ``key_free[key]``, and returns a JSON result."""
    current_job().set_progress(1, 3, "one of three")
    await key_free[key].wait()
    return {"key": key, "done": 3}


@job(name="tests.fails_once_then_holds")
async def fails_once_then_holds(key: str) -> None:
    """Fails its first run; later runs wait for ``key_free[key]``."""
    calls.append(("fails_once_then_holds", key))
    if calls.count(("fails_once_then_holds", key)) == 1:
        raise Flaky(f"{key} fails once")
    await key_free[key].wait()


class NoRecovery:
    """A Recoverer for a journal with no queues behind it: nothing is claimed or run."""

    def room(self) -> tuple[dict[str, int], int]:
        return {}, 0

    def clock_now(self) -> float:
        return time.monotonic()

    def deliver(self, rows: Sequence[ClaimedRow]) -> tuple[list[tuple[str, str]], list[str]]:
        return [], []

    def snapshot(self) -> str:
        return "{}"

    def cancel(self, job_ids: set[str]) -> None:
        pass

    def progress_reports(self) -> list[tuple[str, str]]:
        return []
