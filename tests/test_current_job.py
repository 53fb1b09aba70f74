"""Inside a job: ``current_job()`` finds the job's own handle, and ``set_progress`` reports."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backburner import (
    Backburner,
    BackburnerError,
    CurrentJob,
    Job,
    JobStatus,
    NotInJob,
    Progress,
    Snooze,
    background,
    current_job,
    job,
)
from backburner._job import JobSpec
from backburner._options import DEFAULT_OPTIONS
from backburner.testing import ManualClock, inline

from .jobs import Gate, noop, time_out_first_attempt

pytestmark = pytest.mark.anyio


async def who_am_i() -> tuple[str, str, str, int]:
    handle = current_job()
    return handle.id, handle.name, handle.queue, handle.attempt


def who_am_i_in_a_thread() -> tuple[str, str, int, bool]:
    handle = current_job()
    return handle.id, handle.name, handle.attempt, threading.current_thread().daemon


async def test_an_async_job_finds_its_own_handle() -> None:
    async with Backburner() as bg:
        handle = bg.enqueue(who_am_i)
        assert await handle == (handle.id, "who_am_i", "default", 1)


async def test_a_sync_job_finds_its_own_handle_on_its_thread() -> None:
    async with Backburner() as bg:
        handle = bg.enqueue(who_am_i_in_a_thread)
        assert await handle == (handle.id, "who_am_i_in_a_thread", 1, True)


async def test_outside_a_job_current_job_raises_not_in_job_saying_so() -> None:
    with pytest.raises(NotInJob, match="current_job\\(\\) is for the code of a running job"):
        current_job()
    assert issubclass(NotInJob, BackburnerError)
    async with Backburner():  # an executor running changes nothing for code that is no job's
        with pytest.raises(NotInJob):
            current_job()


async def enqueue_a_child(bg: Backburner) -> tuple[str, str]:
    mine = current_job()  # the handle is kept in this job's context, which children copy
    child = bg.enqueue(who_am_i)
    child_id, *_ = await child
    return mine.id, child_id


async def test_a_job_enqueued_by_a_job_finds_its_own_handle_not_its_parents() -> None:
    async with Backburner() as bg:
        parent = bg.enqueue(enqueue_a_child, bg)
        parent_id, child_id = await parent
        assert parent_id == parent.id
        assert child_id != parent_id


def sync_parent(bg: Backburner, results: list[Any]) -> None:
    current_job()
    results.append(bg.enqueue(who_am_i_in_a_thread))
    results.append(bg.enqueue(who_am_i))


async def test_jobs_enqueued_from_a_sync_job_find_their_own_handles() -> None:
    children: list[Any] = []
    async with Backburner() as bg:
        await bg.enqueue(sync_parent, bg, children)
        sync_child, async_child = children
        assert (await sync_child)[0] == sync_child.id
        assert (await async_child)[0] == async_child.id


async def spawn_a_task() -> tuple[str, str]:
    async def part_of_the_job() -> str:
        return current_job().id

    return current_job().id, await asyncio.create_task(part_of_the_job())


async def test_a_task_the_job_started_works_for_the_job() -> None:
    # As its log records do (backburner.logs): the task does the job's work, and may report
    # its progress.
    async with Backburner() as bg:
        task_job = bg.enqueue(spawn_a_task)
        assert await task_job == (task_job.id, task_job.id)


async def test_a_task_the_job_started_that_outlives_it_is_not_in_the_job() -> None:
    leftovers: list[asyncio.Task[str]] = []

    async def leaves_a_task() -> None:
        async def later() -> str:
            await asyncio.sleep(0)
            await gate.wait()
            return current_job().id

        leftovers.append(asyncio.create_task(later()))

    gate = asyncio.Event()
    async with Backburner() as bg:
        await bg.enqueue(leaves_a_task)
        gate.set()
        with pytest.raises(NotInJob):
            await leftovers[0]


attempts: list[int] = []


@job(retries=2, backoff=0, jitter=0)
async def flaky() -> int:
    handle = current_job()
    attempts.append(handle.attempt)
    handle.set_progress(handle.attempt, 3)
    if handle.attempt < 3:
        raise ValueError("again")
    return handle.attempt


async def test_each_retry_is_a_new_attempt_with_progress_of_its_own() -> None:
    attempts.clear()
    async with Backburner() as bg:
        flaky_job = bg.enqueue(flaky)
        assert await flaky_job == 3
    assert attempts == [1, 2, 3]
    progress = flaky_job.progress
    assert progress is not None
    assert progress.done == 3
    assert progress.rate is None  # one report in this attempt: no rate yet


def _report_or_snooze(seen: list[Progress | None]) -> None:
    # The first run reports, then snoozes; the second reports. Each notes what it saw first.
    handle = current_job()
    seen.append(handle.progress)
    if len(seen) == 1:
        handle.set_progress(50, 100, "first run")
        raise Snooze(30)
    handle.set_progress(10, 100, "second run")


async def snooze_once(seen: list[Progress | None]) -> None:
    _report_or_snooze(seen)


def snooze_once_in_a_thread(seen: list[Progress | None]) -> None:
    _report_or_snooze(seen)


@pytest.mark.parametrize("fn", [snooze_once, snooze_once_in_a_thread])
async def test_a_run_after_a_snooze_starts_with_no_progress_of_its_own(fn: Any) -> None:
    # A snooze keeps the attempt's number (it is not a failed attempt), but the next run's
    # progress and rate are its own, as a retry's are: not 50 then a rate of -40 / seconds.
    clock = ManualClock()
    seen: list[Progress | None] = []
    async with Backburner(clock=clock) as bg:
        snoozed = bg.enqueue(fn, seen)
        while snoozed.status is not JobStatus.SCHEDULED:
            await anyio.wait_all_tasks_blocked()
        assert snoozed.progress is None
        clock.advance(30)
        await snoozed
    assert seen == [None, None]
    progress = snoozed.progress
    assert progress is not None
    assert (progress.done, progress.message, progress.rate) == (10, "second run", None)
    assert snoozed.attempt == 1


async def report_steps(gate: Gate, steps: int) -> None:
    handle = current_job()
    assert handle.progress is None
    for done in range(steps + 1):
        handle.set_progress(done, steps, f"step {done}")
    await gate.hold()


async def test_an_async_job_reports_progress_that_its_handle_and_job_show() -> None:
    gate = Gate()
    async with Backburner() as bg:
        running = bg.enqueue(report_steps, gate, 4)
        await gate.started.wait()
        progress = running.progress
        assert progress is not None
        assert (progress.done, progress.total, progress.message) == (4, 4, "step 4")
        assert progress.fraction == 1.0
        assert progress.eta == 0.0
        gate.opened.set()
        await running


def report_from_a_thread(release: threading.Event, reported: threading.Event) -> str:
    handle = current_job()
    handle.set_progress(5, 10, "halfway")
    reported.set()
    release.wait(60)
    return handle.id


async def test_a_sync_job_reports_progress_from_its_thread() -> None:
    release, reported = threading.Event(), threading.Event()
    async with Backburner() as bg:
        running = bg.enqueue(report_from_a_thread, release, reported)
        assert await asyncio.to_thread(reported.wait, 60)
        progress = running.progress
        assert progress is not None
        assert (progress.done, progress.total, progress.message) == (5, 10, "halfway")
        assert progress.fraction == 0.5
        release.set()
        assert await running == running.id


def test_a_job_run_inline_finds_its_handle_and_reports() -> None:
    with inline() as jobs:
        sync_job = background.enqueue(who_am_i_in_a_thread)
        async_job = background.enqueue(who_am_i)
    assert len(jobs) == 2
    assert sync_job.result()[0] == sync_job.id
    assert async_job.result()[:2] == (async_job.id, "who_am_i")


def test_progress_fraction_and_eta_come_from_the_rate_so_far() -> None:
    progress = Progress(done=30, total=100, message=None, updated_at=1000.0, rate=10.0)
    assert progress.fraction == 0.3
    assert progress.eta == 7.0
    assert Progress(5, None, None, 0.0, 1.0).fraction is None
    assert Progress(5, None, None, 0.0, 1.0).eta is None
    assert Progress(5, 10, None, 0.0, None).eta is None
    assert Progress(5, 10, None, 0.0, 0.0).eta is None  # no headway: cannot be told
    assert Progress(0, 0, None, 0.0, None).fraction == 1.0


def _handle() -> CurrentJob:
    """A handle on a job that is not running: enough to call set_progress on."""
    return CurrentJob(Job(JobSpec(noop, True, DEFAULT_OPTIONS, "default"), (), None, None))


@pytest.mark.parametrize(
    ("done", "total", "message", "error", "words"),
    [
        (-1, None, None, ValueError, "done must be a finite number, 0 or more"),
        (math.nan, None, None, ValueError, "done must be a finite number"),
        (math.inf, None, None, ValueError, "done must be a finite number"),
        (1, math.nan, None, ValueError, "total must be a finite number"),
        # Ints past the largest float: every reader's arithmetic would overflow.
        pytest.param(10**400, None, None, ValueError, "done must be a finite", id="huge-done"),
        pytest.param(10**400, 10**401, None, ValueError, "done must be a finite", id="huge-both"),
        pytest.param(1, 10**400, None, ValueError, "total must be a finite", id="huge-total"),
        pytest.param(10**400, 1.5, None, ValueError, "done must be a finite", id="huge-over"),
        (1, -2, None, ValueError, "total must be a finite number"),
        (11, 10, None, ValueError, "done \\(11\\) is more than total \\(10\\)"),
        ("3", None, None, TypeError, "done must be a number"),
        (True, None, None, TypeError, "done must be a number"),
        (1, "10", None, TypeError, "total must be a number"),
        (1, 10, 42, TypeError, "message must be a str or None, got int 42"),
        pytest.param(
            1,
            10,
            "x" * 1001,
            ValueError,
            "message is 1,001 characters long, more than 1,000",
            id="long-message",
        ),
        pytest.param(
            1,
            10,
            "reading caf\udce9.csv",
            ValueError,
            "message cannot be encoded as UTF-8 .* errors='replace'",
            id="lone-surrogate",
        ),
    ],
)
def test_set_progress_refuses_bad_arguments_where_it_is_called(
    done: Any, total: Any, message: Any, error: type[Exception], words: str
) -> None:
    handle = _handle()
    with pytest.raises(error, match=f"set_progress: {words}"):
        handle.set_progress(done, total, message)
    assert handle.progress is None  # nothing half-kept


@given(
    done=st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True)),
    total=st.one_of(st.none(), st.integers(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_set_progress_keeps_exactly_the_reports_that_make_sense(done: Any, total: Any) -> None:
    handle = _handle()
    sensible = (
        math.isfinite(done)
        and done >= 0
        and (total is None or (math.isfinite(total) and done <= total))
    )
    try:
        handle.set_progress(done, total)
    except (TypeError, ValueError):
        assert not sensible
        assert handle.progress is None
    else:
        assert sensible
        progress = handle.progress
        assert progress is not None
        assert (progress.done, progress.total) == (done, total)
        fraction = progress.fraction
        assert fraction is None or 0 <= fraction <= 1


@given(reports=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=50))
def test_the_rate_and_eta_are_never_negative_for_growing_reports(reports: list[int]) -> None:
    handle = _handle()
    total = max(reports)
    for done in sorted(reports):
        handle.set_progress(done, total)
    progress = handle.progress
    assert progress is not None
    assert progress.rate is None or progress.rate >= 0
    eta = progress.eta
    assert eta is None or eta >= 0


async def test_a_timed_out_attempts_thread_never_reports_as_the_retry() -> None:
    # A timed-out sync job's thread runs on; its reports are of an attempt that has ended,
    # and must not show as the retry's progress (nor may it be told it is the retry).
    clock = ManualClock()
    started, release, late = threading.Event(), threading.Event(), threading.Event()
    retry_running, retry_may_end = threading.Event(), threading.Event()
    seen: list[object] = []

    calls = 0

    def first_hangs() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            handle = current_job()
            handle.set_progress(1, 10, "first")
            started.set()
            release.wait(30)
            handle.set_progress(9, 10, "late, through the first attempt's handle")
            try:
                current_job().set_progress(8, 10, "late, through current_job()")
                seen.append(current_job().attempt)
            except NotInJob:
                seen.append("not in job")
            late.set()
        else:  # (the retry reports nothing: its cell is not made)
            retry_running.set()
            retry_may_end.wait(30)

    async with Backburner(workers=2, clock=clock) as bg:
        handle = bg.options(timeout=1, retries=1, backoff=1, jitter=0).enqueue(first_hangs)
        await time_out_first_attempt(clock, started)  # its thread runs on
        clock.advance(1)
        await anyio.to_thread.run_sync(retry_running.wait, 10)
        release.set()
        await anyio.to_thread.run_sync(late.wait, 10)
        info = await bg.lookup(handle.id)
        assert info is not None
        assert (info.status, info.attempt, info.progress) == (JobStatus.RUNNING, 2, None)
        assert handle.progress is None
        retry_may_end.set()
        await handle
    assert seen == ["not in job"]
