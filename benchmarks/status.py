"""Jobs people watch (issue 13): what progress reports and kept results cost.

* ``set_progress``: ns per call of ``current_job().set_progress(i, total)`` in a loop of
  ``--calls`` (100,000) calls inside a running async job, on the event loop; against a baseline
  that stores the same report as a tuple with a timestamp in an attribute (the least any
  report could cost), measured in the same run. Target: at most 1,000 ns per call.
* kept results: bytes per job that ``keep_results=1000`` holds beyond the results themselves,
  after 1,000 jobs each returned a fresh 100-byte ``bytes``: tracemalloc's growth with
  ``keep_results=1000`` minus the same run with ``keep_results=0``, divided by 1,000, minus one
  result's size. Once as the jobs ended (nobody looked) and once after a ``lookup`` settled
  and indexed them. Target: at most 1 KB per job.
* the path every job takes: CPU µs per no-op job (50,000 enqueued, then ``join()``) with
  ``keep_results=1000`` over the same with ``keep_results=0`` (informational: what keeping
  costs a job nobody looks up).

Every figure is the median of ``--repeats`` runs (range in brackets); the runs being compared
are interleaved, so that machine noise hits both alike, and a ratio is the median of the
per-repeat ratios. Run: ``python benchmarks/status.py [--calls 100000] [--repeats 5] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from backburner import Backburner, current_job

RESULT_BYTES = 100
KEPT = 1000


def describe(values: list[float], fmt: str = "{:.0f}") -> str:
    """The median, and the range in brackets."""
    median = statistics.median(values)
    return f"{fmt.format(median)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# set_progress.


def empty_loop_ns(calls: int) -> int:
    """What ``calls`` turns of an empty ``for`` loop take, in ns: taken off each figure below
    (the loops measured stay written out: a call per turn would be measured too)."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        pass
    return time.perf_counter_ns() - start


async def report_in_a_loop(calls: int) -> float:
    """Inside a job: ns per set_progress call, the empty loop's cost taken off."""
    handle = current_job()
    set_progress = handle.set_progress
    start = time.perf_counter_ns()
    for done in range(calls):
        set_progress(done, calls)
    spent = time.perf_counter_ns() - start
    return (spent - empty_loop_ns(calls)) / calls


class _Cell:
    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest: tuple[float, float | None, str | None, float] | None = None


def baseline_reports(calls: int) -> float:
    """The least a report could cost: one tuple with a timestamp, stored in an attribute."""
    cell, now = _Cell(), time.time
    start = time.perf_counter_ns()
    for done in range(calls):
        cell.latest = (done, calls, None, now())
    spent = time.perf_counter_ns() - start
    return (spent - empty_loop_ns(calls)) / calls


async def progress_run(calls: int) -> tuple[float, float]:
    async with Backburner() as bg:
        ours = await bg.enqueue(report_in_a_loop, calls)
    return ours, baseline_reports(calls)


# Kept results.


async def fresh_bytes() -> bytes:
    return bytes(RESULT_BYTES)  # a new object each time: each job's result is its own


async def memory_run(keep_results: int) -> tuple[int, int]:
    """tracemalloc's growth once KEPT jobs ended, and once a lookup settled them."""
    async with Backburner(keep_results=keep_results) as bg:
        await bg.enqueue(fresh_bytes)  # everything made once (plans, caches) is made now
        await bg.lookup("warm-up")
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        jobs = [bg.enqueue(fresh_bytes) for _ in range(KEPT)]
        await bg.join()
        last = jobs[-1].id
        del jobs  # only the store holds them now (or nothing, with keep_results=0)
        gc.collect()
        ended = tracemalloc.get_traced_memory()[0] - before
        await bg.lookup(last)  # settles and indexes all of them
        gc.collect()
        looked = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    return ended, looked


# The path every job takes.


async def noop() -> None:
    pass


async def cpu_per_job(jobs: int, keep_results: int) -> float:
    async with Backburner(workers=8, max_pending=jobs + 10, keep_results=keep_results) as bg:
        start = time.process_time()
        for _ in range(jobs):
            bg.enqueue(noop)
        await bg.join()
        return (time.process_time() - start) / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true")
    options = parser.parse_args()
    run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    if options.uvloop:
        import uvloop

        run = uvloop.run
    print(f"CPython {platform.python_version()} on {platform.machine()}, {sys.platform}")

    ours, base = [], []
    for _ in range(options.repeats):
        o, b = run(progress_run(options.calls))
        ours.append(o)
        base.append(b)
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    print(f"\nset_progress, {options.calls:,} calls in a job on the loop:")
    print(f"  backburner        {describe(ours)} ns/call   (target: at most 1,000)")
    print(f"  baseline (tuple)  {describe(base)} ns/call")
    print(f"  ratio             {describe(ratios, '{:.2f}')}x")

    sizes: dict[str, list[float]] = {"ended": [], "looked": []}
    for _ in range(options.repeats):
        kept = run(memory_run(KEPT))
        none = run(memory_run(0))
        result = sys.getsizeof(bytes(RESULT_BYTES))
        sizes["ended"].append((kept[0] - none[0]) / KEPT - result)
        sizes["looked"].append((kept[1] - none[1]) / KEPT - result)
    print(f"\nkeeping {KEPT:,} results ({RESULT_BYTES}-byte bytes each), beyond the results:")
    print(f"  as the jobs ended   {describe(sizes['ended'])} bytes/job   (target: at most 1,024)")
    print(f"  after a lookup      {describe(sizes['looked'])} bytes/job   (settled and indexed)")

    on, off = [], []
    for _ in range(options.repeats):
        off.append(run(cpu_per_job(options.jobs, 0)))
        on.append(run(cpu_per_job(options.jobs, KEPT)))
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    print(f"\nthe path every job takes ({options.jobs:,} no-op jobs, CPU time):")
    print(f"  keep_results=1000   {describe(on, '{:.2f}')} µs/job")
    print(f"  keep_results=0      {describe(off, '{:.2f}')} µs/job")
    print(f"  ratio               {describe(ratios, '{:.3f}')}x")


if __name__ == "__main__":
    main()
