"""Shutdown: drain within the deadline, cancel and abandon past it, report every unfinished job.

The deadline is part of the contract, so these tests wait real (short) time and check it with a
generous margin; they never assert on speed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from backburner import Backburner, JobCancelled, JobStatus, NotRunning, ShuttingDown
from backburner import job as as_job
from backburner.testing import ManualClock

from .jobs import noop
from .logs import when_logged

pytestmark = pytest.mark.anyio

MARGIN = 2.0  # seconds of slack on any deadline: shared CI machines stall


def unfinished_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "backburner_unfinished")]


async def test_pending_and_running_jobs_finish_during_a_drain_within_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[int] = []

    async def short(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    bg = Backburner(workers=2, shutdown_timeout=10)
    await bg.start()
    for n in range(200):
        bg.enqueue(short, n)
    report = await bg.aclose()
    assert sorted(done) == list(range(200))
    assert report.unfinished == ()
    assert not unfinished_records(caplog)


async def test_past_the_deadline_running_jobs_are_cancelled_and_waiting_ones_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "backburner")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    bg = Backburner(workers=1, shutdown_timeout=0.5)
    await bg.start()
    running = bg.enqueue(forever)
    waiting = [bg.enqueue(forever) for _ in range(3)]
    await started.wait()
    began = time.monotonic()
    report = await bg.aclose()
    assert time.monotonic() - began < 0.5 + MARGIN
    assert report.cancelled == (running,)
    assert report.not_started == tuple(waiting)
    assert all(job.status is JobStatus.CANCELLED for job in [running, *waiting])
    with pytest.raises(JobCancelled):
        await waiting[0]
    [record] = unfinished_records(caplog)
    assert record.levelno == logging.WARNING
    listed = {entry["id"] for entry in record.backburner_unfinished}  # type: ignore[attr-defined]
    assert listed == {job.id for job in [running, *waiting]}
    for job in [running, *waiting]:
        assert job.id in record.getMessage()


async def test_a_job_that_swallows_cancellation_is_abandoned_and_does_not_hold_shutdown() -> None:
    started = asyncio.Event()
    let_go = False

    async def stubborn() -> None:
        started.set()
        while not let_go:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    bg = Backburner(shutdown_timeout=0.6, cancel_grace=0.3)
    await bg.start()
    job = bg.enqueue(stubborn)
    await started.wait()
    began = time.monotonic()
    report = await bg.aclose()
    assert time.monotonic() - began < 0.6 + MARGIN
    assert report.abandoned == (job,)
    assert job.status is JobStatus.ABANDONED
    # In a server the process ends here; in this test, let the job go so the loop can close.
    task = job.task
    assert task is not None
    let_go = True
    task.cancel()
    await task
    # It ended after it was given up: its status and the counters stay as reported.
    assert job.status is JobStatus.ABANDONED
    assert bg.stats().total.processed == 0


async def test_a_sync_job_still_in_its_thread_is_abandoned_and_its_late_end_is_logged() -> None:
    started, release = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(30)

    with when_logged(lambda record: "after it was given up" in record.getMessage()) as late:
        bg = Backburner(shutdown_timeout=0.4)
        await bg.start()
        job = bg.enqueue(blocking)
        await anyio.to_thread.run_sync(started.wait, 10)
        began = time.monotonic()
        report = await bg.aclose()
        assert time.monotonic() - began < 0.4 + MARGIN
        assert report.abandoned == (job,)
        assert job.status is JobStatus.ABANDONED
        release.set()
        assert await anyio.to_thread.run_sync(late.seen.wait, 30)  # logged from the loop


async def test_a_retry_running_beside_its_timed_out_attempts_thread_is_reported_once() -> None:
    # At shutdown a sync job's retry runs in one thread while its first attempt, timed out,
    # still runs in another: the report lists the job once, as abandoned; each thread, when it
    # returns, is logged under its own attempt and gives its worker slot back.
    clock = ManualClock()
    loop = asyncio.get_running_loop()
    release = threading.Event()
    began = [asyncio.Event(), asyncio.Event()]

    @as_job(timeout=5, retries=1, backoff=1, jitter=0)
    def hangs(attempts: list[int]) -> None:
        attempts.append(1)
        loop.call_soon_threadsafe(began[len(attempts) - 1].set)
        release.wait(30)

    def returned(attempt: int) -> Callable[[logging.LogRecord], bool]:
        return lambda r: f"attempt={attempt} returned after it was given up" in r.getMessage()

    with when_logged(returned(1)) as first, when_logged(returned(2)) as second:
        try:
            bg = Backburner(workers=2, clock=clock, shutdown_timeout=0.4)
            await bg.start()
            job = bg.enqueue(hangs, [])
            await began[0].wait()
            clock.advance(5)  # attempt 1 times out; its thread runs on, holding its slot
            await anyio.wait_all_tasks_blocked()
            clock.advance(1)  # attempt 2 starts in the other slot
            await began[1].wait()
            assert bg.stats().queues["default"].busy == 2
            report = await bg.aclose()
            assert (report.abandoned, report.scheduled, report.cancelled) == ((job,), (), ())
            assert (job.status, job.attempt) == (JobStatus.ABANDONED, 2)
            await anyio.wait_all_tasks_blocked()  # the abandoned attempt's task lets go
            # Attempt 1's slot stays taken till its thread returns; attempt 2 is the report's.
            assert bg.stats().queues["default"].busy == 1
        finally:
            release.set()
        assert await anyio.to_thread.run_sync(first.seen.wait, 30)  # logged from the loop
        assert await anyio.to_thread.run_sync(second.seen.wait, 30)
    await anyio.wait_all_tasks_blocked()
    stats = bg.stats().queues["default"]
    assert (stats.busy, stats.cancelled) == (0, 1)
    assert job.status is JobStatus.ABANDONED  # its late ends change nothing


async def test_a_cancelled_job_gets_the_cancel_grace_to_clean_up() -> None:
    started = asyncio.Event()
    cleaned: list[str] = []

    async def tidy() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.2)
            cleaned.append("done")

    bg = Backburner(shutdown_timeout=1.5, cancel_grace=1.0)
    await bg.start()
    job = bg.enqueue(tidy)
    await started.wait()
    report = await bg.aclose()
    assert cleaned == ["done"]
    assert report.cancelled == (job,)


async def test_enqueue_during_the_drain_raises_shutting_down() -> None:
    gate = asyncio.Event()
    refused: list[BaseException] = []

    async def enqueue_while_draining() -> None:
        await gate.wait()
        try:
            bg.enqueue(asyncio.sleep, 0)
        except ShuttingDown as exc:
            refused.append(exc)

    bg = Backburner(shutdown_timeout=5)
    await bg.start()
    bg.enqueue(enqueue_while_draining)
    closing = asyncio.ensure_future(bg.aclose())
    await anyio.wait_all_tasks_blocked()
    gate.set()
    report = await closing
    assert len(refused) == 1
    assert "shutting down" in str(refused[0])
    assert report.unfinished == ()


async def test_a_second_aclose_waits_for_the_first_and_returns_the_same_report() -> None:
    bg = Backburner(shutdown_timeout=0.3)
    await bg.start()
    bg.enqueue(asyncio.sleep, 3600)
    first, second = await asyncio.gather(bg.aclose(), bg.aclose())
    assert first is second
    assert len(first.cancelled) == 1


async def test_jobs_accepted_before_start_are_reported_if_the_executor_never_starts() -> None:
    bg = Backburner()
    await bg.open()
    job = bg.enqueue(asyncio.sleep, 0)
    report = await bg.aclose()
    assert report.not_started == (job,)


async def test_zero_shutdown_timeout_cancels_at_once() -> None:
    results: list[Any] = []
    bg = Backburner(shutdown_timeout=0)
    await bg.start()
    job = bg.enqueue(asyncio.sleep, 3600)
    await anyio.wait_all_tasks_blocked()
    report = await bg.aclose()
    results.append(report.cancelled)
    assert results == [(job,)]


async def test_an_aenqueue_waiting_for_room_is_refused_when_shutdown_begins() -> None:
    bg = Backburner(workers=1, max_pending=1)
    await bg.start()
    bg.pause("default")  # nothing starts: the queue stays full
    bg.enqueue(noop)
    bg.enqueue(noop)
    waiting = asyncio.create_task(bg.aenqueue(noop))
    await anyio.wait_all_tasks_blocked()
    await bg.aclose()
    with pytest.raises(NotRunning, match="shut down"):
        await waiting


async def test_a_running_job_with_a_timeout_is_reported_once_as_what_it_became() -> None:
    started = asyncio.Event()

    @as_job(timeout=30)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    bg = Backburner(shutdown_timeout=1)
    await bg.start()
    running = bg.enqueue(slow)
    await started.wait()
    report = await bg.aclose()
    assert running not in report.scheduled  # its timeout is no scheduled job
    assert report.cancelled == (running,)
    assert running.status is JobStatus.CANCELLED
