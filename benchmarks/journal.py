"""Durable jobs: what the journal costs at enqueue, and how fast a restart takes jobs back.

Measured in one run, against the in-memory executor (``Backburner()`` with no journal) on the
same machine, through the same calls:

* enqueue throughput, jobs/s, of N jobs into an executor that is open but not started (so no
  job runs while enqueueing, and only the enqueue path is timed):
  - ``sync, 1 thread``: ``bg.enqueue(fn, i)`` in a loop on the event loop's thread; with a
    journal each call returns once its job is committed, so this is one commit per job;
  - ``sync, 4 threads``: the same loop in 4 threads at once (a sync endpoint's threadpool):
    their jobs share commits (group commit);
  - ``awaitable, 100 tasks``: 100 tasks each ``await bg.aenqueue(fn, i)`` in a loop: each
    waits for its commit without blocking the loop, so the loop fills the next commit;
* run throughput, jobs/s: every job's start is committed before its code runs (so a job
  that kills its process counts a crash), and its end after; starts and ends share commits:
  - ``run backlog, W workers``: N jobs enqueued into an open executor, then ``start()``;
    from ``start()`` to the end of ``join()`` (only running is timed);
  - ``enqueue and run, 100 tasks``: 100 tasks ``await bg.aenqueue(fn, i)`` into a started
    executor (4 workers) while it runs them; from the first enqueue to the end of ``join()``;
* recovery: seconds ``open()`` takes on a journal holding 100,000 unfinished jobs released
  by a clean shutdown, until every one is back in its queue (checked: the queue's pending
  count), and the same after a crash (rows still claimed by an owner whose pid is gone).

Each figure is the median of ``--repeats`` runs, each on a fresh journal file in a temporary
folder (on the same disk as ``/tmp``). Run:
``python benchmarks/journal.py [--jobs 20000] [--recover 100000] [--repeats 5] [--power]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from backburner import Backburner, job
from backburner._journal._owners import local_host


@job(name="bench.noop")
async def noop(value: int) -> None:
    pass


Measure = Callable[[Path | None, int], Awaitable[float]]


async def sync_one_thread(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    bg = Backburner(journal=journal, durability=durability if journal else None, max_pending=jobs)
    await bg.open()
    began = time.perf_counter()
    for i in range(jobs):
        bg.enqueue(noop, i)
    elapsed = time.perf_counter() - began
    await bg.aclose()
    return jobs / elapsed


async def sync_four_threads(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    bg = Backburner(journal=journal, durability=durability if journal else None, max_pending=jobs)
    await bg.open()
    ready = threading.Barrier(5)

    def enqueue(start: int, count: int) -> None:
        ready.wait()
        for i in range(start, start + count):
            bg.enqueue(noop, i)

    share = jobs // 4
    threads = [threading.Thread(target=enqueue, args=(k * share, share)) for k in range(4)]
    for thread in threads:
        thread.start()
    ready.wait()
    began = time.perf_counter()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    elapsed = time.perf_counter() - began
    await bg.aclose()
    return share * 4 / elapsed


async def awaitable_tasks(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    bg = Backburner(journal=journal, durability=durability if journal else None, max_pending=jobs)
    await bg.open()
    tasks = 100
    share = jobs // tasks

    async def enqueue(start: int) -> None:
        for i in range(start, start + share):
            await bg.aenqueue(noop, i)

    began = time.perf_counter()
    await asyncio.gather(*(enqueue(k * share) for k in range(tasks)))
    elapsed = time.perf_counter() - began
    await bg.aclose()
    return share * tasks / elapsed


async def _run_backlog(journal: Path | None, jobs: int, durability: str, workers: int) -> float:
    bg = Backburner(
        journal=journal,
        durability=durability if journal else None,
        max_pending=jobs,
        workers=workers,
    )
    await bg.open()
    share = jobs // 100

    async def enqueue(start: int) -> None:
        for i in range(start, start + share):
            await bg.aenqueue(noop, i)

    await asyncio.gather(*(enqueue(k * share) for k in range(100)))
    began = time.perf_counter()
    await bg.start()
    await bg.join()
    elapsed = time.perf_counter() - began
    await bg.aclose()
    return share * 100 / elapsed


async def run_backlog_4(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    return await _run_backlog(journal, jobs, durability, workers=4)


async def run_backlog_64(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    return await _run_backlog(journal, jobs, durability, workers=64)


async def enqueue_and_run(journal: Path | None, jobs: int, durability: str = "normal") -> float:
    bg = Backburner(journal=journal, durability=durability if journal else None, max_pending=jobs)
    await bg.start()
    share = jobs // 100

    async def enqueue(start: int) -> None:
        for i in range(start, start + share):
            await bg.aenqueue(noop, i)

    began = time.perf_counter()
    await asyncio.gather(*(enqueue(k * share) for k in range(100)))
    await bg.join()
    elapsed = time.perf_counter() - began
    await bg.aclose()
    return share * 100 / elapsed


async def fill(journal: Path, jobs: int) -> None:
    """A journal holding ``jobs`` unfinished jobs, released by a clean shutdown."""
    bg = Backburner(journal=journal, max_pending=jobs)
    await bg.open()

    async def enqueue(start: int, count: int) -> None:
        for i in range(start, start + count):
            await bg.aenqueue(noop, i)

    share = jobs // 100
    await asyncio.gather(*(enqueue(k * share, share) for k in range(100)))
    await bg.aclose()


def orphan(journal: Path) -> None:
    """Make the released jobs look like a crashed process's: claimed by a pid that is gone."""
    owner = f"{local_host()}:999999999:crashed"
    connection = sqlite3.connect(journal)
    with connection:
        connection.execute("UPDATE jobs SET owner = ?, lease_until = 9e12", (owner,))
        connection.execute(
            "INSERT OR REPLACE INTO owners (owner, heartbeat, started_at, released) "
            "VALUES (?, 9e12, 0, 0)",
            (owner,),
        )
    connection.close()


async def recovery(journal: Path, jobs: int) -> float:
    bg = Backburner(journal=journal, max_pending=jobs)
    began = time.perf_counter()
    await bg.open()
    elapsed = time.perf_counter() - began
    pending = bg.stats().total.pending
    assert pending == jobs, f"recovered {pending} of {jobs}"
    await bg.aclose()  # released again, for the next repeat
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--recover", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--power", action="store_true", help="also durability='power'")
    parser.add_argument("--power-jobs", type=int, default=2_000, help="fewer: an fsync each")
    parser.add_argument("--no-recovery", action="store_true", help="throughput rows only")
    options = parser.parse_args()
    logging.getLogger("backburner").setLevel(logging.ERROR)  # shutdown reports every job
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    modes: list[tuple[str, Callable[..., Awaitable[float]]]] = [
        ("sync, 1 thread", sync_one_thread),
        ("sync, 4 threads", sync_four_threads),
        ("awaitable, 100 tasks", awaitable_tasks),
        ("run backlog, 4 workers", run_backlog_4),
        ("run backlog, 64 workers", run_backlog_64),
        ("enqueue and run, 100 t.", enqueue_and_run),
    ]
    durabilities = {"normal": options.jobs}
    if options.power:
        durabilities["power"] = options.power_jobs
    with tempfile.TemporaryDirectory() as folder:
        print(f"\nthroughput, jobs/s, median of {options.repeats} runs")
        heads = " ".join(f"{f'journal {d} ({n:,})':>24}" for d, n in durabilities.items())
        print(f"{'':22} {f'in memory ({options.jobs:,})':>20} {heads}")
        for label, measure in modes:
            memory: list[float] = []
            durable: dict[str, list[float]] = {d: [] for d in durabilities}
            for repeat in range(options.repeats):
                memory.append(asyncio.run(measure(None, options.jobs)))
                for durability, jobs in durabilities.items():
                    path = Path(folder) / f"{measure.__name__}-{durability}-{repeat}.sqlite3"
                    durable[durability].append(asyncio.run(measure(path, jobs, durability)))
            row = f"{label:22} {median(memory):>20,.0f} "
            row += " ".join(
                f"{median(v):>15,.0f} ({median(v) / median(memory):.3f}x)" for v in durable.values()
            )
            print(row, flush=True)

        if options.no_recovery:
            return
        print(f"\nrecovery at open(), s, median of {options.repeats}, {options.recover:,} jobs")
        path = Path(folder) / "recover.sqlite3"
        asyncio.run(fill(path, options.recover))
        released = [asyncio.run(recovery(path, options.recover)) for _ in range(options.repeats)]
        print(f"{'after a clean shutdown':24} {median(released):>8.2f} s  {sorted(released)}")
        crashed = []
        for _ in range(options.repeats):
            orphan(path)
            crashed.append(asyncio.run(recovery(path, options.recover)))
        print(f"{'after a crash':24} {median(crashed):>8.2f} s  {sorted(crashed)}")


if __name__ == "__main__":
    main()
