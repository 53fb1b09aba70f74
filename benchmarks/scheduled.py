"""Delayed jobs: 100,000 scheduled, measured against a hand-written baseline in the same run.

What it measures, for backburner's ``enqueue_in`` and for the baseline (``loop.call_at`` per job
feeding an ``asyncio.Queue`` worker pool, the least a hand-written delay could cost):

* schedule cost: µs per ``enqueue_in`` of N jobs due over the next ``--spread`` seconds;
* memory per scheduled job: tracemalloc's traced bytes after scheduling N jobs, divided by N;
* lateness under load: p50 and p99 of (start time - due time), for N jobs due over the spread,
  while the same workers also run a steady stream of about 10,000 immediate no-op jobs/s.

Every figure is the median of ``--repeats`` runs, the two implementations interleaved so that
machine noise hits both alike; ratios are backburner over baseline. Run:
``python benchmarks/scheduled.py [--jobs 100000] [--repeats 3] [--spread 3] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import logging
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from backburner import Backburner

Runner = Callable[[int, float], Coroutine[Any, Any, dict[str, float]]]


async def noop() -> None:
    pass


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Baseline:
    """``loop.call_at`` per delayed job, then an asyncio.Queue pool of worker tasks."""

    def __init__(self, workers: int) -> None:
        self.queue: asyncio.Queue[tuple[Callable[..., Any], tuple[Any, ...], float]] = (
            asyncio.Queue()
        )
        self.loop = asyncio.get_running_loop()
        self.lateness: list[float] = []
        self.tasks = [asyncio.ensure_future(self._work()) for _ in range(workers)]
        self.handles: list[asyncio.TimerHandle] = []

    async def _work(self) -> None:
        while True:
            fn, args, due = await self.queue.get()
            if due:
                self.lateness.append(time.time() - due)
            with contextlib.suppress(Exception):  # a baseline: failures are not its job
                await fn(*args)
            self.queue.task_done()

    def enqueue_in(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        due = time.time() + delay
        context = contextvars.copy_context()
        self.handles.append(
            self.loop.call_later(delay, context.run, self.queue.put_nowait, (fn, args, due))
        )

    def enqueue(self, fn: Callable[..., Any], *args: Any) -> None:
        self.queue.put_nowait((fn, args, 0.0))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def schedule_cost_baseline(jobs: int, spread: float) -> dict[str, float]:
    result = {}
    for traced in (False, True):  # time without tracemalloc (it slows everything), then bytes
        pool = Baseline(8)
        gc.collect()
        if traced:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        for n in range(jobs):
            pool.enqueue_in(3600 + spread * n / jobs, noop)
        elapsed = time.perf_counter() - began
        if traced:
            result["bytes"] = (tracemalloc.get_traced_memory()[0] - before) / jobs
            tracemalloc.stop()
        else:
            result["schedule_us"] = elapsed / jobs * 1e6
        for handle in pool.handles:
            handle.cancel()
        await pool.close()
    return result


async def schedule_cost_backburner(jobs: int, spread: float) -> dict[str, float]:
    result = {}
    for traced in (False, True):
        async with Backburner(workers=8, max_scheduled=jobs + 1, shutdown_timeout=5) as bg:
            gc.collect()
            if traced:
                tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            began = time.perf_counter()
            for n in range(jobs):
                bg.enqueue_in(3600 + spread * n / jobs, noop)
            elapsed = time.perf_counter() - began
            if traced:
                result["bytes"] = (tracemalloc.get_traced_memory()[0] - before) / jobs
                tracemalloc.stop()
            else:
                result["schedule_us"] = elapsed / jobs * 1e6
    return result


async def steady_load(enqueue: Callable[[], None], stop: asyncio.Event) -> None:
    while not stop.is_set():  # about 10,000 immediate jobs a second beside the delayed ones
        for _ in range(50):
            enqueue()
        await asyncio.sleep(0.005)


async def lateness_baseline(jobs: int, spread: float) -> dict[str, float]:
    pool = Baseline(8)
    stop = asyncio.Event()
    load = asyncio.ensure_future(steady_load(lambda: pool.enqueue(noop), stop))
    for n in range(jobs):
        pool.enqueue_in(0.5 + spread * n / jobs, noop)
    while len(pool.lateness) < jobs:  # noqa: ASYNC110 - a benchmark's own bounded poll
        await asyncio.sleep(0.05)
    stop.set()
    await load
    await pool.queue.join()
    await pool.close()
    return {
        "p50_ms": percentile(pool.lateness, 0.5) * 1000,
        "p99_ms": percentile(pool.lateness, 0.99) * 1000,
    }


async def lateness_backburner(jobs: int, spread: float) -> dict[str, float]:
    lateness: list[float] = []
    async with Backburner(
        workers=8, max_scheduled=jobs + 1, max_pending=jobs + 100_000, shutdown_timeout=5
    ) as bg:
        stop = asyncio.Event()
        load = asyncio.ensure_future(steady_load(lambda: bg.enqueue(noop), stop))
        handles = [bg.enqueue_in(0.5 + spread * n / jobs, noop) for n in range(jobs)]
        for handle in handles:
            await handle.wait()
        stop.set()
        await load
        for handle in handles:
            assert handle.started_at is not None
            assert handle.run_at is not None
            lateness.append(handle.started_at - handle.run_at)
    return {
        "p50_ms": percentile(lateness, 0.5) * 1000,
        "p99_ms": percentile(lateness, 0.99) * 1000,
    }


def run(runner: Runner, jobs: int, spread: float, use_uvloop: bool) -> dict[str, float]:
    if use_uvloop:
        import uvloop

        return uvloop.run(runner(jobs, spread))
    return asyncio.run(runner(jobs, spread))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spread", type=float, default=3.0, help="seconds the due times span")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    # Each backburner run ends with jobs still scheduled: keep the shutdown report quiet.
    logging.getLogger("backburner").setLevel(logging.ERROR)
    print(
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{'uvloop' if args.uvloop else 'asyncio'}; {args.jobs:,} jobs, "
        f"median of {args.repeats}"
    )
    pairs = {
        "schedule": (schedule_cost_backburner, schedule_cost_baseline),
        "lateness": (lateness_backburner, lateness_baseline),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.repeats):
        for name, (ours, theirs) in pairs.items():
            for label, runner in (("backburner", ours), ("baseline", theirs)):
                for key, value in run(runner, args.jobs, args.spread, args.uvloop).items():
                    results.setdefault(f"{name}.{key}", {}).setdefault(label, []).append(value)
    print(f"{'measure':<28}{'backburner':>12}{'baseline':>12}{'ratio':>8}")
    for measure, values in results.items():
        ours = statistics.median(values["backburner"])
        theirs = statistics.median(values["baseline"])
        print(f"{measure:<28}{ours:>12.2f}{theirs:>12.2f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
