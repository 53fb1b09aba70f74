"""Delayed jobs: enqueue_in, enqueue_at, one scheduler for all of them, driven by a ManualClock."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest

from backburner import Backburner, JobStatus, QueueConfig, QueueFull
from backburner.testing import ManualClock

pytestmark = pytest.mark.anyio

ran: list[str] = []


async def record(label: str) -> str:
    ran.append(label)
    return label


@pytest.fixture(autouse=True)
def clear() -> None:
    ran.clear()


async def test_enqueue_in_runs_the_job_once_its_delay_has_passed() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        job = bg.enqueue_in(30, record, "later")
        assert job.status is JobStatus.SCHEDULED
        assert job.run_at == clock.now() + 30
        assert bg.stats().total.scheduled == 1
        clock.advance(29.9)
        await bg.join()
        assert ran == []
        clock.advance(0.1)
        assert await job == "later"
        assert bg.stats().total.scheduled == 0


async def test_delayed_jobs_run_in_due_order_whatever_the_order_they_were_enqueued() -> None:
    clock = ManualClock()
    async with Backburner(workers=1, clock=clock) as bg:
        bg.enqueue_in(timedelta(minutes=3), record, "c")
        bg.enqueue_in(60, record, "a")
        bg.enqueue_in(120, record, "b")
        clock.advance(3600)
        await bg.join()
    assert ran == ["a", "b", "c"]


async def test_enqueue_at_takes_an_aware_datetime_and_refuses_a_naive_one() -> None:
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc))
    async with Backburner(clock=clock) as bg:
        paris = timezone(timedelta(hours=1))
        job = bg.enqueue_at(datetime(2026, 1, 1, 13, 30, tzinfo=paris), record, "noon-thirty")
        assert job.run_at == datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc).timestamp()
        with pytest.raises(ValueError, match="timezone-aware"):
            bg.enqueue_at(datetime(2026, 1, 1, 13, 0), record, "naive")
        clock.advance(1800)
        assert await job == "noon-thirty"


async def test_a_time_in_the_past_runs_at_once() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        job = bg.enqueue_at(datetime(2000, 1, 1, tzinfo=timezone.utc), record, "overdue")
        clock.advance(0)
        assert await job == "overdue"


@pytest.mark.parametrize("delay", [-1, float("nan"), "5", None])
async def test_bad_delays_are_refused(delay: object) -> None:
    async with Backburner() as bg:
        with pytest.raises((TypeError, ValueError), match="delay must be"):
            bg.enqueue_in(delay, record, "x")  # type: ignore[call-overload]


async def test_a_cancelled_scheduled_job_never_runs() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        job = bg.enqueue_in(10, record, "never")
        assert job.cancel()
        assert bg.stats().total.scheduled == 0
        clock.advance(60)
        await bg.join()
    assert ran == []
    assert job.status is JobStatus.CANCELLED


async def test_many_scheduled_jobs_cost_no_tasks() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, max_scheduled=200_000, max_pending=50_000) as bg:
        tasks_before = len(asyncio.all_tasks())
        for n in range(20_000):
            bg.enqueue_in(60 + n % 600, record, "x")
        assert len(asyncio.all_tasks()) == tasks_before
        assert bg.stats().total.scheduled == 20_000
        clock.advance(3600)
        await bg.join()
    assert len(ran) == 20_000


async def test_the_schedule_is_bounded_by_max_scheduled() -> None:
    async with Backburner(max_scheduled=2) as bg:
        bg.enqueue_in(60, record, "a")
        bg.enqueue_in(60, record, "b")
        with pytest.raises(QueueFull, match=r"schedule is full.*max_scheduled=2"):
            bg.enqueue_in(60, record, "c")


async def test_a_due_job_that_finds_its_queue_full_waits_and_is_not_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    gate = asyncio.Event()
    async with Backburner(workers=1, max_pending=1, clock=clock) as bg:
        bg.enqueue(gate.wait)  # holds the only worker
        bg.enqueue(gate.wait)  # fills the queue
        late = bg.enqueue_in(5, record, "late")
        clock.advance(5)
        assert late.status is JobStatus.SCHEDULED  # back to wait: the queue was full
        assert "queue 'default' is full (max_pending=1): 1 due jobs" in caplog.text
        gate.set()
        await bg.join()
        clock.advance(1)
        assert await late == "late"


async def test_scheduled_jobs_count_against_their_own_queue() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, queues={"mail": QueueConfig()}) as bg:
        bg.options(queue="mail").enqueue_in(10, record, "m")
        stats = bg.stats()
        assert (stats.queues["mail"].scheduled, stats.queues["default"].scheduled) == (1, 0)


async def test_jobs_still_scheduled_at_shutdown_are_reported_by_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    bg = Backburner(clock=clock, shutdown_timeout=1)
    await bg.start()
    job = bg.enqueue_in(3600, record, "tomorrow")
    report = await bg.aclose()
    assert report.scheduled == (job,)
    assert job.status is JobStatus.CANCELLED
    [record_] = [r for r in caplog.records if hasattr(r, "backburner_unfinished")]
    assert record_.levelno == logging.WARNING
    assert job.id in record_.getMessage()
