"""The core benchmark: what backburner costs per job, against two hand-written executors.

Run it as ``.venv/bin/python benchmarks/core.py`` (or ``make bench``); ``--quick`` is a smoke
run of a few seconds, ``--json PATH`` also writes every sample. It needs only the dev deps.

Three executors, all driven by the same code through the same calls (``enqueue(fn)``,
``await aenqueue(fn)``, ``await join()``), with ``async def noop(): pass`` as the job:

- ``backburner``: ``Backburner(workers=W, max_pending=M)``.
- ``(a)`` task per job (``_baselines.TaskPerJob``): an ``asyncio.Queue`` of
  ``(fn, args, copy_context())`` and W workers that each run a job as its own task in that
  context and await it. What per-job cancellation and context isolation cost at the least.
- ``(b)`` inline (``_baselines.Inline``): the same queue of ``(fn, args)``, the worker awaits
  ``fn(*args)`` itself. The bare floor.

Measurements, each in a fresh event loop, on asyncio's own loop and on uvloop:

- throughput, W=8 and W=64: enqueue ``--jobs`` (50,000) no-op jobs at once, then ``join()``;
  jobs/s from the first enqueue to the end of ``join()``.
- enqueue: the enqueue loop of the W=8 run above, timed on its own; µs per job. Nothing awaits
  during it, so no job runs; backburner starts a task for each of the first W jobs inside
  ``enqueue`` and the baselines wake a waiting worker for each, both counted as they are.
- steady state, W=8: a producer ``await aenqueue(noop)`` ``--jobs`` times into a queue bounded
  at 1024, so it keeps the queue full while the workers drain it; then ``join()``; jobs/s.
  Informational: the issue's targets are about the burst above.
- memory: the only worker blocked on an event, ``--memory-jobs`` (100,000) more jobs enqueued
  so that they all wait; the growth of ``tracemalloc``'s traced memory over that enqueue loop,
  per job (what does not outlive the loop cancels out), checked against the same bytes added up
  with ``sys.getsizeof``. It is exact, the same every time, so it is measured once per loop.

Every repeat (``--repeats``, 5) runs every timed measurement for every executor and loop,
rotating which executor goes first, so machine noise hits all alike. A figure is the median of
the repeats; a ratio is the median of the per-repeat ratios (each against a baseline measured
seconds apart), with their range in brackets. For µs and bytes lower is better, for jobs/s
higher. The garbage collector stays on (collecting many live jobs is part of what they cost)
but runs before each timed section. 50,000 jobs per run keep the spread of the ratios within a
few percent and a full run near 90 s on a 2-core machine; 100,000 double that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

from _baselines import Inline, TaskPerJob

import backburner
from backburner import Backburner, Job

IMPLEMENTATIONS = ("backburner", "a", "b")
LABELS = {"backburner": "backburner", "a": "(a) task/job", "b": "(b) inline"}

# The targets, against baseline (a) on the same loop.
MIN_THROUGHPUT_RATIO = 0.9
MAX_ENQUEUE_RATIO = 3.0
MAX_BYTES_PER_PENDING_JOB = 400
# `background.enqueue` inside a request's context, against `bg.enqueue` in the same run.
MAX_BACKGROUND_RATIO = 1.10

STEADY_MAX_PENDING = 1024


class Executor(Protocol):
    """What the benchmark needs of an executor; backburner and both baselines have it."""

    def enqueue(self, fn: Callable[..., Awaitable[Any]], /, *args: Any) -> object: ...

    async def aenqueue(self, fn: Callable[..., Awaitable[Any]], /, *args: Any) -> object: ...

    async def join(self) -> None: ...


async def noop() -> None:
    pass


async def block(event: asyncio.Event) -> None:
    await event.wait()


@contextlib.asynccontextmanager
async def running(impl: str, *, workers: int, max_pending: int) -> AsyncIterator[Executor]:
    """A started executor of kind ``impl``, closed on the way out (not timed)."""
    if impl == "backburner":
        async with Backburner(workers=workers, max_pending=max_pending) as bg:
            yield bg
    elif impl == "a":
        async with TaskPerJob(workers=workers, max_pending=max_pending) as a:
            yield a
    elif impl == "b":
        async with Inline(workers=workers, max_pending=max_pending) as b:
            yield b
    else:
        raise ValueError(f"unknown executor {impl!r}; expected one of {IMPLEMENTATIONS}")


# The measurements. Each runs in a fresh event loop and returns its figures by row key.

Figures = dict[str, float]


async def burst(impl: str, jobs: int, workers: int) -> tuple[float, float]:
    """µs per ``enqueue()`` while no job runs, and jobs/s from the first enqueue to ``join()``."""
    async with running(impl, workers=workers, max_pending=jobs) as executor:
        enqueue = executor.enqueue
        gc.collect()
        began = time.perf_counter()
        for _ in range(jobs):
            enqueue(noop)  # nothing awaits here, so no job runs until join()
        enqueued = time.perf_counter()
        await executor.join()
        ended = time.perf_counter()
    return (enqueued - began) / jobs * 1e6, jobs / (ended - began)


async def through_background(jobs: int) -> tuple[float, float]:
    """µs per ``bg.enqueue()`` and per ``background.enqueue()`` in a request's context.

    The middleware sets the context variable for each request, as here; the two loops
    alternate in slices so that machine noise hits both alike.
    """
    from backburner import background
    from backburner._context import current_executor_var, request_enqueue_var

    async with Backburner(workers=8, max_pending=2 * jobs) as bg:
        # What BackburnerMiddleware does for each request (it binds `enqueue` once).
        token, fast = current_executor_var.set(bg), request_enqueue_var.set(bg.enqueue)
        try:
            direct = proxied = 0.0
            slice_ = max(1, jobs // 10)
            for _ in range(10):
                gc.collect()
                began = time.perf_counter()
                for _ in range(slice_):
                    bg.enqueue(noop)
                middle = time.perf_counter()
                for _ in range(slice_):
                    background.enqueue(noop)
                direct += middle - began
                proxied += time.perf_counter() - middle
            await bg.join()
        finally:
            request_enqueue_var.reset(fast)
            current_executor_var.reset(token)
    return direct / (10 * slice_) * 1e6, proxied / (10 * slice_) * 1e6


async def steady(impl: str, jobs: int, workers: int) -> float:
    """Jobs/s with a producer that keeps a bounded queue full while the workers drain it."""
    async with running(impl, workers=workers, max_pending=STEADY_MAX_PENDING) as executor:
        aenqueue = executor.aenqueue
        gc.collect()
        began = time.perf_counter()
        for _ in range(jobs):
            await aenqueue(noop)
        await executor.join()
        ended = time.perf_counter()
    return jobs / (ended - began)


async def memory(impl: str, jobs: int) -> tuple[float, float]:
    """Bytes each waiting job holds, by ``tracemalloc`` and by adding up ``sys.getsizeof``."""
    async with running(impl, workers=1, max_pending=jobs) as executor:
        release = asyncio.Event()
        executor.enqueue(block, release)
        for _ in range(3):  # the worker takes the blocker, whose task starts and waits
            await asyncio.sleep(0)
        try:
            traced, last = _traced_growth(executor, jobs)
            waiting = _waiting(executor)
            if waiting != jobs:
                raise RuntimeError(f"{impl}: {waiting} of {jobs} jobs waiting, not all of them")
            sized = _sizeof_pending(executor, last)
        finally:
            release.set()  # else closing would wait out shutdown_timeout for the blocker
        await executor.join()
    return traced / jobs, sized


def _traced_growth(executor: Executor, jobs: int) -> tuple[int, object]:
    enqueue = executor.enqueue
    last: object = None
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(jobs):
            last = enqueue(noop)
        return tracemalloc.get_traced_memory()[0] - before, last
    finally:
        tracemalloc.stop()


def _waiting(executor: Executor) -> int:
    if isinstance(executor, Backburner):
        return executor.stats().total.pending
    assert isinstance(executor, (TaskPerJob, Inline))
    return executor.queue.qsize()


def _sizeof_pending(executor: Executor, handle: object) -> int:
    """The same figure added up by hand: the objects one waiting job alone keeps alive."""
    deque_slot = 8  # a deque holds a pointer per item
    if isinstance(handle, Job):
        # Everything else a pending Job points to is shared: its spec (function, options,
        # queue), (), None, the queue, and its enqueue time's float (one for the jobs accepted
        # in the same millisecond). (Its id's number is drawn when the id is first asked
        # for: a waiting job has none.)
        return deque_slot + sum(sys.getsizeof(part) for part in (handle, handle.context))
    assert isinstance(executor, (TaskPerJob, Inline))
    item = executor.queue.get_nowait()  # (fn, args[, context]): fn and () are shared
    executor.queue.task_done()
    contexts = [part for part in item if isinstance(part, contextvars.Context)]
    return deque_slot + sys.getsizeof(item) + sum(sys.getsizeof(c) for c in contexts)


async def run_burst8(impl: str, options: argparse.Namespace) -> Figures:
    enqueue_us, rate = await burst(impl, options.jobs, 8)
    return {"enqueue": enqueue_us, "burst8": rate}


async def run_burst64(impl: str, options: argparse.Namespace) -> Figures:
    _, rate = await burst(impl, options.jobs, 64)
    return {"burst64": rate}


async def run_background(impl: str, options: argparse.Namespace) -> Figures:
    if impl != "backburner":
        return {}  # the baselines have no proxy: this row is backburner against itself
    direct, proxied = await through_background(options.jobs)
    return {"enqueue_direct": direct, "enqueue_background": proxied}


async def run_steady8(impl: str, options: argparse.Namespace) -> Figures:
    return {"steady8": await steady(impl, options.jobs, 8)}


async def run_memory(impl: str, options: argparse.Namespace) -> Figures:
    traced, sized = await memory(impl, options.memory_jobs)
    return {"memory": traced, "memory_sizeof": sized}


Run = Callable[[str, argparse.Namespace], Coroutine[Any, Any, Figures]]

#: Every repeat makes the timed runs; the memory run is exact (the same bytes every time), so it
#: is made in the first repeat only.
TIMED_RUNS: tuple[Run, ...] = (run_burst8, run_burst64, run_steady8, run_background)
ONCE_RUNS: tuple[Run, ...] = (run_memory,)


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    label: str
    format: str


ROWS = (
    Row("enqueue", "enqueue, µs/job", "{:.2f}"),
    Row("burst8", "throughput, 8 workers, jobs/s", "{:,.0f}"),
    Row("burst64", "throughput, 64 workers, jobs/s", "{:,.0f}"),
    Row("steady8", f"steady (max_pending {STEADY_MAX_PENDING}), 8 workers, jobs/s", "{:,.0f}"),
    Row("memory", "memory, bytes/pending job", "{:.0f}"),
    Row("memory_sizeof", "  the same by sys.getsizeof", "{:.0f}"),
)
# backburner alone: `background.enqueue` in a request's context against `bg.enqueue`.
OWN_ROWS = (
    Row("enqueue_direct", "bg.enqueue, µs/job", "{:.2f}"),
    Row("enqueue_background", "background.enqueue in a request, µs/job", "{:.2f}"),
)


# Running.


def event_loops() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # Windows: no uvloop; the asyncio figures stand alone
        print("uvloop is not installed: measuring asyncio's own loop only", file=sys.stderr)
    else:
        loops["uvloop"] = uvloop.new_event_loop
    return loops


def run_in_fresh_loop(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    coroutine: Coroutine[Any, Any, Figures],
) -> Figures:
    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


Samples = dict[str, dict[str, dict[str, list[float]]]]  # loop -> row -> executor -> samples


def measure_all(
    options: argparse.Namespace, loops: dict[str, Callable[[], asyncio.AbstractEventLoop]]
) -> Samples:
    samples: Samples = {
        loop: {row.key: {impl: [] for impl in IMPLEMENTATIONS} for row in ROWS + OWN_ROWS}
        for loop in loops
    }
    warm_up = argparse.Namespace(jobs=min(options.jobs, 2000), memory_jobs=100)
    for new_loop in loops.values():
        for run in TIMED_RUNS + ONCE_RUNS:
            for impl in IMPLEMENTATIONS:
                run_in_fresh_loop(new_loop, run(impl, warm_up))
    for repeat in range(options.repeats):
        began = time.perf_counter()
        order = IMPLEMENTATIONS[repeat % 3 :] + IMPLEMENTATIONS[: repeat % 3]
        runs = TIMED_RUNS + ONCE_RUNS if repeat == 0 else TIMED_RUNS
        for loop_name, new_loop in loops.items():
            for run in runs:
                for impl in order:
                    figures = run_in_fresh_loop(new_loop, run(impl, options))
                    for key, value in figures.items():
                        samples[loop_name][key][impl].append(value)
        print(
            f"repeat {repeat + 1}/{options.repeats}: {time.perf_counter() - began:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    return samples


# Reporting.


@dataclasses.dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.median:.2f}x"
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Ratio:
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios))


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # Linux only; elsewhere, what platform knows
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (
                line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines()
            )
        )
        if "model name" in fields:
            cpu = fields["model name"]
        if "cpu MHz" in fields:
            cpu += f", {float(fields['cpu MHz']):.0f} MHz"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "backburner": f"{backburner.__version__}{_git_revision()}",
    }
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        info["uvloop"] = importlib.metadata.version("uvloop")
    return info


def _git_revision() -> str:
    """`` (git 1a2b3c4)`` for the checkout backburner was imported from, if it is one."""
    source = Path(backburner.__file__).parent
    try:
        found = subprocess.run(
            ["git", "-C", str(source), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" (git {found.stdout.strip()})"


def table(samples: dict[str, dict[str, list[float]]]) -> list[str]:
    """The figures as a Markdown table: readable here, and ready for the README."""
    header = ["", *(LABELS[i] for i in IMPLEMENTATIONS), "backburner ÷ (a)", "backburner ÷ (b)"]
    cells = [header]
    for row in ROWS:
        by_impl = samples[row.key]
        cells.append(
            [
                row.label,
                *(row.format.format(statistics.median(by_impl[i])) for i in IMPLEMENTATIONS),
                str(paired_ratio(by_impl["backburner"], by_impl["a"])),
                str(paired_ratio(by_impl["backburner"], by_impl["b"])),
            ]
        )
    ours = samples["enqueue_background"]["backburner"]
    if ours:
        theirs = samples["enqueue_direct"]["backburner"]
        cells.append(
            [
                "background.enqueue ÷ bg.enqueue (in a request)",
                f"{statistics.median(ours):.2f} µs",
                f"{statistics.median(theirs):.2f} µs",
                "",
                str(paired_ratio(ours, theirs)),
                "",
            ]
        )
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    rule = ["-" * widths[0], *("-" * (width - 1) + ":" for width in widths[1:])]
    lines = []
    for line in [cells[0], rule, *cells[1:]]:
        padded = [line[0].ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("| " + " | ".join(padded) + " |")
    return lines


def verdicts(samples: dict[str, dict[str, list[float]]]) -> list[tuple[bool, str]]:
    results = []
    for key, workers in (("burst8", 8), ("burst64", 64)):
        ratio = paired_ratio(samples[key]["backburner"], samples[key]["a"])
        results.append(
            (
                ratio.median >= MIN_THROUGHPUT_RATIO,
                f"throughput, {workers} workers: {ratio} of (a); target ≥ {MIN_THROUGHPUT_RATIO}x",
            )
        )
    ratio = paired_ratio(samples["enqueue"]["backburner"], samples["enqueue"]["a"])
    results.append(
        (
            ratio.median <= MAX_ENQUEUE_RATIO,
            f"enqueue: {ratio} of (a)'s; target ≤ {MAX_ENQUEUE_RATIO}x",
        )
    )
    ours = samples["enqueue_background"]["backburner"]
    if ours:
        ratio = paired_ratio(ours, samples["enqueue_direct"]["backburner"])
        results.append(
            (
                ratio.median <= MAX_BACKGROUND_RATIO,
                f"background.enqueue in a request: {ratio} of bg.enqueue's; "
                f"target ≤ {MAX_BACKGROUND_RATIO}x",
            )
        )
    size = statistics.median(samples["memory"]["backburner"])
    results.append(
        (
            size <= MAX_BYTES_PER_PENDING_JOB,
            f"memory: {size:.0f} bytes per pending job; target ≤ {MAX_BYTES_PER_PENDING_JOB}",
        )
    )
    return results


def report(options: argparse.Namespace, samples: Samples, info: dict[str, str]) -> None:
    print("backburner core benchmark")
    for key, value in info.items():
        print(f"  {key + ':':<12}{value}")
    print(
        f"  {'settings:':<12}{options.jobs:,} jobs per throughput run, "
        f"{options.memory_jobs:,} pending for memory, {options.repeats} repeat(s), medians"
    )
    missed = 0
    for loop_name, by_measure in samples.items():
        print()
        print(f"{loop_name}:")
        for line in table(by_measure):
            print(f"  {line}")
        for met, text in verdicts(by_measure):
            missed += not met
            print(f"  {'PASS' if met else 'FAIL'}  {text}")
    print()
    print("every target met" if not missed else f"{missed} target(s) missed")


def write_json(
    path: Path, options: argparse.Namespace, samples: Samples, info: dict[str, str]
) -> None:
    document = {
        "machine": info,
        "settings": {
            "jobs": options.jobs,
            "memory_jobs": options.memory_jobs,
            "repeats": options.repeats,
        },
        "rows": {row.key: row.label for row in ROWS + OWN_ROWS},
        "samples": samples,
        "medians": {
            loop: {
                key: {impl: statistics.median(values) for impl, values in by_impl.items() if values}
                for key, by_impl in by_measure.items()
            }
            for loop, by_measure in samples.items()
        },
        "targets": {
            loop: [{"met": met, "text": text} for met, text in verdicts(by_measure)]
            for loop, by_measure in samples.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs per timed run")
    parser.add_argument(
        "--memory-jobs", type=int, default=100_000, help="jobs kept pending for memory"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 jobs, 1 repeat")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample here")
    options = parser.parse_args(argv)
    if options.quick:
        options.jobs, options.memory_jobs, options.repeats = 2000, 2000, 1
    info = machine()
    loops = event_loops()
    info["loops"] = ", ".join(loops)
    samples = measure_all(options, loops)
    report(options, samples, info)
    if options.json is not None:
        write_json(options.json, options, samples, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
