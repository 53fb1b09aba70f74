"""Under load and garbage collection: every job completes, asyncio complains of nothing, and
each failure is reported exactly once."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from backburner import Backburner, Job

pytestmark = pytest.mark.anyio

JOBS = 100_000
FAILING = 1_000
COMPLAINTS = ("Task was destroyed but it is pending", "exception was never retrieved")


def asyncio_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio logged in the test (the autouse guard looks only at its errors)."""
    return [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "asyncio"]


async def test_a_hundred_thousand_jobs_complete_while_gc_runs_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = [0]  # async jobs that ran to their end (the sync ones count in stats)

    async def step(n: int) -> None:
        if n % 500 == 0:
            gc.collect()  # 200 full collections while up to 10,000 jobs wait and 16 run
        await asyncio.sleep(0)  # suspended: a task only the queue holds on to
        done[0] += 1

    def in_thread(n: int) -> int:
        return n

    async with Backburner(workers=16, max_pending=10_000) as bg:
        for n in range(JOBS):
            if n % 20 == 0:
                await bg.aenqueue(in_thread, n)
            else:
                await bg.aenqueue(step, n)
        await bg.join()
        gc.collect()
        stats = bg.stats().total
    assert stats.processed == JOBS
    assert (stats.failed, stats.pending, stats.busy) == (0, 0, 0)
    assert done[0] == JOBS - JOBS // 20
    messages = asyncio_messages(caplog)
    assert not [m for m in messages if any(c in m for c in COMPLAINTS)], messages[:5]


async def test_a_thousand_failing_jobs_give_exactly_a_thousand_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "backburner")
    hooked: list[str] = []

    async def fails(n: int) -> None:
        if n % 100 == 0:
            gc.collect()
        raise ValueError(f"bad input {n}")

    def fails_in_thread(n: int) -> None:
        raise ValueError(f"bad input {n}")

    def on_error(job: Job[Any], exc: BaseException) -> None:
        hooked.append(job.id)

    async with Backburner(workers=8, on_error=on_error) as bg:
        jobs = [bg.enqueue(fails_in_thread if n % 10 == 0 else fails, n) for n in range(FAILING)]
        await bg.join()
        del jobs  # nobody awaits them: their exceptions are never "retrieved"
        gc.collect()
        stats = bg.stats().total
        failures = bg.failures()
    reports = [r for r in caplog.records if r.name == "backburner" and r.levelno == logging.ERROR]
    assert len(reports) == FAILING
    assert len({r.backburner_job_id for r in reports}) == FAILING  # type: ignore[attr-defined]
    assert all("ValueError: bad input" in r.getMessage() for r in reports)
    assert sorted(hooked) == sorted(r.backburner_job_id for r in reports)  # type: ignore[attr-defined]
    assert (stats.failed, stats.processed) == (FAILING, FAILING)
    assert len(failures) == FAILING
    messages = asyncio_messages(caplog)
    assert not [m for m in messages if any(c in m for c in COMPLAINTS)], messages[:5]
