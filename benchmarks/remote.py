"""The price of scaling out: the same jobs in-process and through taskiq over Redis, in one run.

Run it as ``.venv/bin/python benchmarks/remote.py`` (``--quick`` for a smoke run). It starts
its own ``redis-server`` (``/usr/bin/redis-server``, on a free loopback port, no persistence)
and one ``taskiq worker`` process (``tests.remote.worker_app``, the test suite's), and stops
them at the end. The job is ``tests.remote.jobs.add(1, 2)``: an async job that returns at once.

For each engine, each repeat (``--repeats``, 3), in a fresh event loop:

- enqueue, sync: ``bg.enqueue(add, 1, 2)`` ``--jobs`` times; µs per call, as the caller pays
  it. In-process the job is queued; with taskiq it is checked and buffered for the senders.
- enqueue, awaited: ``await bg.aenqueue(add, 1, 2)`` one after another; µs per call. With
  taskiq each call returns once Redis has the job (one round trip, JSON encoding, XADD).
- end to end: ``--jobs`` jobs enqueued at once, until every one has run; jobs/s. In-process,
  until ``join()`` returns. With taskiq, until the worker acknowledged every message (the
  stream's consumer group has no lag and nothing pending): one worker process, taskiq's
  defaults, results saved to Redis.

A figure is the median of the repeats, with their range.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backburner import Backburner  # noqa: E402
from backburner.taskiq import redis_engine  # noqa: E402
from tests.remote._processes import RedisServer, TaskiqProcess  # noqa: E402
from tests.remote.jobs import add  # noqa: E402

QUEUE = "backburner"  # the worker app's default queue name


async def enqueue_sync(bg: Backburner, jobs: int) -> float:
    """µs per sync enqueue."""
    started = time.perf_counter()
    for _ in range(jobs):
        bg.enqueue(add, 1, 2)
    elapsed = time.perf_counter() - started
    await bg.join()
    return elapsed / jobs * 1e6


async def enqueue_awaited(bg: Backburner, jobs: int) -> float:
    """µs per awaited enqueue."""
    started = time.perf_counter()
    for _ in range(jobs):
        await bg.aenqueue(add, 1, 2)
    elapsed = time.perf_counter() - started
    await bg.join()
    return elapsed / jobs * 1e6


async def worker_done(url: str) -> None:
    """Wait until the worker has acknowledged every message in the stream."""
    client = aioredis.Redis.from_url(url)
    try:
        while True:
            groups = await client.xinfo_groups(QUEUE)
            if groups and all(g["lag"] == 0 and g["pending"] == 0 for g in groups):
                return
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()


async def end_to_end(bg: Backburner, jobs: int, url: str | None) -> float:
    """Jobs/s from the first enqueue until the last job ran."""
    if url is not None:
        await worker_done(url)  # nothing left over from an earlier measurement
    started = time.perf_counter()
    for _ in range(jobs):
        bg.enqueue(add, 1, 2)
    await bg.join()
    if url is not None:
        await worker_done(url)
    return jobs / (time.perf_counter() - started)


def run(make: Callable[[], Backburner], measure: Callable[[Backburner], Awaitable[float]]) -> float:
    """One measurement in a fresh event loop and a fresh executor."""

    async def main() -> float:
        async with make() as bg:
            return await measure(bg)

    return asyncio.run(main())


def row(name: str, local: list[float], remote: list[float], unit: str) -> str:
    """One table row: medians, ranges, and the ratio remote ÷ in-process."""
    lo, re_ = statistics.median(local), statistics.median(remote)
    spread = f"{min(remote):,.1f}\u2013{max(remote):,.1f}"
    return f"| {name}, {unit} | {lo:,.1f} | {re_:,.1f} ({spread}) | {re_ / lo:,.2f}\u00d7 |"


def main() -> None:
    """Start Redis and a worker, measure both engines, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    options = parser.parse_args()
    jobs, repeats = (200, 1) if options.quick else (options.jobs, options.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis")
        redis.start()
        worker = None
        try:
            worker = TaskiqProcess("worker", redis.url, Path(tmp), ["--workers", "1"])
            url = redis.url
            samples: dict[str, dict[str, list[float]]] = {"local": {}, "taskiq": {}}
            measures: dict[str, Callable[[Backburner, str | None], Awaitable[float]]] = {
                "enqueue, sync": lambda bg, _: enqueue_sync(bg, jobs),
                "enqueue, awaited": lambda bg, _: enqueue_awaited(bg, jobs),
                "end to end": lambda bg, u: end_to_end(bg, jobs, u),
            }
            for _ in range(repeats):
                for name, measure in measures.items():
                    samples["local"].setdefault(name, []).append(
                        run(lambda: Backburner(workers=8), lambda bg, m=measure: m(bg, None))
                    )
                    samples["taskiq"].setdefault(name, []).append(
                        run(
                            lambda: Backburner(workers=8, engine=redis_engine(url)),
                            lambda bg, m=measure: m(bg, url),
                        )
                    )
        finally:
            if worker is not None:
                worker.stop()
            redis.stop()

    print(
        f"{jobs:,} jobs a measurement, median of {repeats}; Python {platform.python_version()}, "
        f"{platform.machine()}, asyncio's loop; one taskiq worker process, Redis on loopback"
    )
    print()
    print("| measurement | in-process | taskiq + Redis (range) | taskiq ÷ in-process |")
    print("| --- | ---: | ---: | ---: |")
    local, remote = samples["local"], samples["taskiq"]
    print(row("enqueue, sync", local["enqueue, sync"], remote["enqueue, sync"], "µs/job"))
    print(row("enqueue, awaited", local["enqueue, awaited"], remote["enqueue, awaited"], "µs/job"))
    print(row("end to end", local["end to end"], remote["end to end"], "jobs/s"))


if __name__ == "__main__":
    main()
