"""A sibling process for ``tests/test_host_limits.py``: ``python -m tests.host_limits_child DIR
LOG MODE N`` runs an executor with ``coordination=DIR``, as another worker of the app would.

``MODE`` ``concurrency`` or ``rate``: prints ``ready``, waits for SIGUSR1 (so that every
sibling enqueues at once), enqueues ``N`` jobs limited by ``ONE`` (or ``RATE``), each
appending ``start PID TIME`` and ``end PID TIME`` to ``LOG``, then prints ``done`` once all
have ended. ``hold``: enqueues one job limited by ``ONE`` that prints ``holding`` and never
ends (the test SIGKILLs the process while it holds its token).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from backburner import Backburner, ConcurrencyLimit, RateLimit

#: The limits every process of the test's app declares (found across them by their names).
ONE = ConcurrencyLimit(1, name="tests.one-at-a-time", scope="host")
RATE = RateLimit(2, per=2.0, name="tests.two-per-2s", scope="host")


def note(log: Path, what: str) -> None:
    """Append one line (one O_APPEND write: lines of several processes never mix)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{what} {os.getpid()} {time.time()!r}\n".encode())
    finally:
        os.close(fd)


async def work(log: str) -> None:
    note(Path(log), "start")
    await asyncio.sleep(0.01)  # long enough for a sibling to start one too, were it let
    note(Path(log), "end")


async def hold() -> None:
    print("holding", flush=True)
    await asyncio.Event().wait()


async def main(directory: Path, log: Path, mode: str, count: int) -> None:
    async with Backburner(coordination=directory, workers=4) as bg:
        if mode == "hold":
            bg.options(limits=[ONE]).enqueue(hold)
            await asyncio.Event().wait()  # until killed
        go = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
        print("ready", flush=True)
        await go.wait()
        limit = ONE if mode == "concurrency" else RATE
        jobs = [bg.options(limits=[limit]).enqueue(work, str(log)) for _ in range(count)]
        for handle in jobs:
            await handle
        print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
