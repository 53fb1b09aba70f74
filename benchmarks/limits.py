"""Limits: what a ConcurrencyLimit costs, that it holds no worker, and how exact a RateLimit is.

Three measurements (issue 15's numbers), each figure the median of ``--repeats`` with its range:

* **keyed concurrency**: ``--jobs`` (10,000) jobs over ``--keys`` (1,000) keys, enqueued at once
  then ``join()``, with ``ConcurrencyLimit(1, key=...)`` and without any limit, the two runs
  alternated within each repeat; jobs/s, and the ratio limited ÷ plain per repeat (target
  ≥ 0.8x). The job is ``await asyncio.sleep(0)``: a job that yields once, as any I/O job does;
  the limited one declares its limit with ``@job(limits=[...])``.
* **one hot key**: one key with ``--waiting`` (100) jobs waiting on 8 workers; the most workers
  the key's jobs ever occupied at once, read by each job as it starts (target: 1).
* **rate**: ``RateLimit(100, per=1)`` for ``--seconds`` (30); enough jobs enqueued at once to
  keep it busy; starts/s: the starts in the ``--seconds`` from the first start, divided by
  them (target: within 1% of 100), and the most starts in any one-second window of the jobs'
  own start times (``job.started_at``; target ≤ 100).

Run: ``python benchmarks/limits.py [--repeats 5] [--seconds 30] [--uvloop]`` (``--quick``: 3
repeats and a 5 s rate run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from backburner import Backburner, ConcurrencyLimit, RateLimit, job


def keyed(key: int) -> str:
    return str(key)


async def yield_once(key: int) -> None:
    await asyncio.sleep(0)


@job(limits=[ConcurrencyLimit(1, key=keyed)])
async def yield_once_limited(key: int) -> None:
    await asyncio.sleep(0)


async def keyed_run(jobs: int, keys: int, limited: bool, workers: int) -> float:
    """Jobs/s for ``jobs`` jobs over ``keys`` keys, with or without ConcurrencyLimit(1)."""
    fn = yield_once_limited if limited else yield_once
    async with Backburner(workers=workers, max_pending=jobs + 1) as bg:
        gc.collect()
        began = time.perf_counter()
        for n in range(jobs):
            bg.enqueue(fn, n % keys)
        await bg.join()
        return jobs / (time.perf_counter() - began)


async def hot_key(waiting: int, workers: int) -> int:
    """The most workers one key's jobs occupied at once, as each job saw on its start."""
    seen: list[int] = []
    limit = ConcurrencyLimit(1)

    async def job(bg: Backburner) -> None:
        seen.append(bg.stats().queues["default"].busy)
        await asyncio.sleep(0.001)

    async with Backburner(workers=workers) as bg:
        for _ in range(waiting + 1):
            bg.options(limits=[limit]).enqueue(job, bg)
        await bg.join()
    return max(seen)


async def rate_run(seconds: float, limit: int) -> tuple[float, int]:
    """(starts/s over the run, the most starts in any one-second window)."""
    rate = RateLimit(limit, per=1.0)

    async def job() -> None:
        pass

    async with Backburner(workers=8, max_pending=100_000) as bg:
        handles = [
            bg.options(limits=[rate]).enqueue(job) for _ in range(int(seconds * limit) + limit)
        ]
        await asyncio.sleep(seconds + 0.5)
        starts = sorted(h.started_at for h in handles if h.started_at is not None)
        for handle in handles:
            handle.cancel()
    # Starts come in bursts as the window slides (a full window opens room for a burst): so
    # the rate is the starts in the `seconds` seconds from the first, not first-to-last.
    per_second = sum(1 for s in starts if s < starts[0] + seconds) / seconds
    most, first = 0, 0
    for last, start in enumerate(starts):
        while start - starts[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return per_second, most


def summary(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))} .. " + (
        f"{fmt.format(max(values))}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--waiting", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 repeats, a 5 s rate run")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 3, 5.0
    run: Callable[[Any], Any] = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run

    plain: list[float] = []
    limited: list[float] = []
    ratios: list[float] = []
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        got = {flag: run(keyed_run(args.jobs, args.keys, flag, args.workers)) for flag in order}
        plain.append(got[False])
        limited.append(got[True])
        ratios.append(got[True] / got[False])
    hot = [run(hot_key(args.waiting, args.workers)) for _ in range(args.repeats)]
    rates, most = [], []
    for _ in range(min(args.repeats, 3)):
        per_second, peak = run(rate_run(args.seconds, 100))
        rates.append(per_second)
        most.append(peak)

    print(f"{args.jobs:,} jobs over {args.keys:,} keys, {args.workers} workers, medians [range]")
    print(f"  no limit               {summary(plain)} jobs/s")
    print(f"  ConcurrencyLimit(1)    {summary(limited)} jobs/s")
    print(f"  limited / plain        {summary(ratios, '{:.2f}')}x   target >= 0.80x")
    print(f"one key, {args.waiting} waiting: most workers occupied {max(hot)}   target 1")
    print(f"RateLimit(100, per=1) over {args.seconds:g}s:")
    print(f"  starts/s               {summary(rates, '{:.2f}')}   target 99.00 .. 101.00")
    print(f"  most in any 1s window  {max(most)}   target <= 100")
    ok = (
        statistics.median(ratios) >= 0.8
        and max(hot) == 1
        and all(99 <= r <= 101 for r in rates)
        and max(most) <= 100
    )
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
