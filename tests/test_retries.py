"""Retries with backoff and jitter, the dead list, timeouts, unique jobs and @job options."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backburner import (
    Backburner,
    DuplicateJob,
    Job,
    JobOptions,
    JobStatus,
    JobTimeout,
    QueueConfig,
    QueueFull,
    background,
    job,
)
from backburner.testing import ManualClock

from .jobs import Gate, time_out_first_attempt
from .steps import between_steps

pytestmark = pytest.mark.anyio


class Flaky:
    """Fails its first ``failures`` calls, then returns the attempt number."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return self.calls


async def test_a_failed_job_is_retried_after_its_backoff_and_its_attempts_are_numbered() -> None:
    clock = ManualClock()
    flaky = Flaky(failures=2)
    async with Backburner(clock=clock) as bg:
        handle = bg.options(retries=3, backoff=10, jitter=0).enqueue(flaky)
        await bg.join()
        assert (handle.status, handle.attempt) == (JobStatus.RETRYING, 1)
        assert handle.run_at == clock.now() + 10
        assert isinstance(handle.exception(), ConnectionError)  # the last error, visible
        clock.advance(10)
        await bg.join()
        assert (handle.status, handle.attempt, handle.run_at) == (
            JobStatus.RETRYING,
            2,
            clock.now() + 20,
        )
        clock.advance(20)
        assert await handle == 3
        assert handle.attempt == 3


@given(
    attempt=st.integers(1, 40),
    backoff=st.floats(0.01, 100),
    cap=st.floats(0.01, 1000),
    jitter=st.floats(0, 1),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_a_retrys_backoff_stays_within_its_jitter_bounds(
    attempt: int, backoff: float, cap: float, jitter: float, rand: float
) -> None:
    options = JobOptions(backoff=backoff, backoff_max=cap, jitter=jitter)
    delay = options.retry_delay(attempt, rand=lambda: rand)
    expected = min(cap, backoff * 2 ** (attempt - 1))
    assert expected * (1 - jitter) - 1e-9 <= delay <= expected * (1 + jitter) + 1e-9


async def test_a_job_read_from_another_thread_as_it_succeeds_shows_its_error_or_result() -> None:
    # Its result and its last error share one slot, told apart by its status: a thread that
    # reads the job between the loop's steps of `succeed` must never be handed its result as
    # its error, nor anything but its result once it says it is done. A tracer reads it
    # there, at each step.
    flaky = Flaky(1)
    seen: list[tuple[object, object]] = []
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        handle = bg.options(retries=1, backoff=1, jitter=0).enqueue(flaky)
        await bg.join()  # the first attempt failed: its error is kept while the retry waits
        code = Job.succeed.__code__

        def look() -> None:  # the other thread, between two of the loop's steps
            seen.append((handle.exception(), handle.result() if handle.done() else None))

        with between_steps(code, look):
            clock.advance(1)
            assert await handle == 2
    assert seen
    for error, result in seen:
        assert error is None or str(error) == "failure 1", error
        assert result in (None, 2), result


async def test_after_the_last_retry_the_job_is_dead_with_its_last_traceback() -> None:
    clock = ManualClock()
    flaky = Flaky(failures=10)
    errors: list[str] = []
    async with Backburner(clock=clock, on_error=lambda j, e: errors.append(str(e))) as bg:
        handle = bg.options(retries=2, backoff=1, jitter=0).enqueue(flaky)
        for _ in range(3):
            await bg.join()
            clock.advance(60)
        with pytest.raises(ConnectionError, match="failure 3"):
            await handle
        assert handle.status is JobStatus.DEAD
        assert bg.failures() == [handle]
        assert bg.stats().total.dead == 1
    assert errors == ["failure 3"]  # on_error once, for the final failure
    exc = handle.exception()
    assert exc is not None
    assert exc.__traceback__ is not None


async def test_only_exceptions_in_retry_on_are_retried() -> None:
    flaky = Flaky(failures=1, error=KeyError)
    async with Backburner() as bg:
        handle = bg.options(retries=5, retry_on=(ConnectionError,)).enqueue(flaky)
        with pytest.raises(KeyError):
            await handle
    assert handle.attempt == 1


async def test_a_dead_job_can_be_retried_from_the_dead_list_and_succeed() -> None:
    flaky = Flaky(failures=1)
    async with Backburner() as bg:
        handle = bg.enqueue(flaky)
        await handle.wait()
        assert handle.status is JobStatus.FAILED
        again = bg.retry(handle.id)
        assert again is handle
        assert await handle == 2
        assert bg.failures() == []


async def test_dead_jobs_can_be_discarded_one_or_all() -> None:
    async with Backburner() as bg:
        jobs = [bg.enqueue(Flaky(failures=1)) for _ in range(3)]
        await bg.join()
        assert bg.discard(jobs[0])
        assert not bg.discard(jobs[0])
        assert bg.discard_all() == 2
        assert bg.failures() == []
        with pytest.raises(ValueError, match="not in failures"):
            bg.retry(jobs[1])


async def test_retry_all_sends_every_failed_job_again() -> None:
    async with Backburner() as bg:
        jobs = [bg.enqueue(Flaky(failures=1)) for _ in range(3)]
        await bg.join()
        assert bg.retry_all() == 3
        assert [await j for j in jobs] == [2, 2, 2]


async def test_retrying_a_unique_job_by_hand_never_runs_it_beside_a_live_duplicate() -> None:
    gate = asyncio.Event()
    runs: list[str] = []

    async def sync_account(user: str, fail: bool) -> None:
        runs.append(user)
        if fail:
            raise ConnectionError("the account service is down")
        await gate.wait()

    def key(user: str, fail: bool) -> str:
        return f"sync:{user}"

    async with Backburner() as bg:
        dead = bg.options(unique=key).enqueue(sync_account, "ada", True)
        with pytest.raises(ConnectionError):
            await dead
        live = bg.options(unique=key).enqueue(sync_account, "ada", False)  # holds the key now
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(DuplicateJob, match="sync:ada") as info:
            bg.retry(dead)
        assert info.value.existing is live
        # Refused, the job is still in the dead list exactly as it was.
        assert bg.failures() == [dead]
        assert dead.status is JobStatus.FAILED
        assert isinstance(dead.exception(), ConnectionError)
        assert runs == ["ada", "ada"]
        gate.set()
        await live
        # Once the live one ended, the retry goes through (and fails again, as written).
        assert bg.retry(dead) is dead
        with pytest.raises(ConnectionError):
            await dead
        assert runs == ["ada", "ada", "ada"]


async def test_a_retry_by_hand_that_finds_the_queue_full_leaves_the_job_as_it_was() -> None:
    gate = Gate()
    async with Backburner(workers=1, max_pending=1) as bg:
        dead = bg.enqueue(Flaky(failures=1))
        with pytest.raises(ConnectionError):
            await dead
        bg.enqueue(gate.hold)
        bg.enqueue(gate.hold)  # the worker busy, the one waiting place taken
        with pytest.raises(QueueFull):
            bg.retry(dead)
        assert bg.failures() == [dead]
        assert dead.status is JobStatus.FAILED
        assert isinstance(dead.exception(), ConnectionError)
        gate.opened.set()
        await bg.join()
        assert await bg.retry(dead) == 2


async def test_the_dead_list_is_bounded() -> None:
    async with Backburner(keep_failed=5) as bg:
        jobs = [bg.enqueue(Flaky(failures=1)) for _ in range(8)]
        await bg.join()
    assert bg.failures() == jobs[3:]


async def test_an_async_job_past_its_timeout_is_cancelled_and_fails_with_job_timeout() -> None:
    clock = ManualClock()
    cleaned = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    async with Backburner(clock=clock) as bg:
        handle = bg.options(timeout=5).enqueue(slow)
        await anyio.wait_all_tasks_blocked()
        clock.advance(5)
        with pytest.raises(JobTimeout, match="ran past its timeout of 5s") as info:
            await handle
        assert isinstance(info.value, TimeoutError)
        assert cleaned.is_set()


async def _sleeps_an_hour() -> None:
    await asyncio.sleep(3600)


async def test_each_failure_line_says_the_attempt_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        handle = bg.options(timeout=5, retries=2, backoff=1, jitter=0).enqueue(_sleeps_an_hour)
        for _ in range(3):
            await anyio.wait_all_tasks_blocked()
            clock.advance(5)  # past the attempt's timeout
            await bg.join()
            clock.advance(10)  # past the backoff: the next attempt starts
        await handle.wait()
    assert handle.status is JobStatus.DEAD
    lines = [r.getMessage() for r in caplog.records if r.name == "backburner" and r.levelno >= 30]
    assert [line.count("attempt") for line in lines] == [1, 1, 1], lines
    assert "failed (attempt 2 of 3): JobTimeout: " in lines[1]
    assert "failed after 3 attempts: JobTimeout: " in lines[2]


async def test_a_sync_job_past_its_timeout_fails_but_keeps_its_slot_until_its_thread_returns() -> (
    None
):
    clock = ManualClock()
    started, release = threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(30)
        return "late"

    async with Backburner(workers=1, clock=clock) as bg:
        handle = bg.options(timeout=5).enqueue(blocking)
        await anyio.to_thread.run_sync(started.wait, 10)
        clock.advance(5)
        with pytest.raises(JobTimeout, match="left running in its thread"):
            await handle
        # The thread still runs: its slot is honestly still taken.
        assert bg.stats().queues["default"].busy == 1
        queued = bg.enqueue(asyncio.sleep, 0)
        await anyio.wait_all_tasks_blocked()
        assert queued.status is JobStatus.PENDING
        release.set()
        await queued
        assert bg.stats().queues["default"].busy == 0


async def test_retries_of_a_sync_job_start_while_its_timed_out_threads_run_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each attempt borrows a thread of its own: a retry that starts while an earlier
    # attempt's thread runs on must not collide with it, and each such thread keeps one
    # worker slot, given back when that thread returns.
    clock = ManualClock()
    loop = asyncio.get_running_loop()
    release = threading.Event()
    hung: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    calls = 0

    def hangs_twice() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            loop.call_soon_threadsafe(hung[calls - 1].set)
            release.wait(60)  # runs on past its timeout
            return "late"
        return "third"

    try:
        async with Backburner(workers=3, clock=clock) as bg:
            handle = bg.options(timeout=5, retries=2, backoff=1, jitter=0).enqueue(hangs_twice)
            for attempt in (1, 2):
                await hung[attempt - 1].wait()
                clock.advance(5)  # this attempt times out; its thread runs on
                await anyio.wait_all_tasks_blocked()
                assert handle.status is JobStatus.RETRYING
                assert bg.stats().queues["default"].busy == attempt  # one slot per thread
                assert handle.run_at is not None
                # The next attempt starts beside the threads left running.
                clock.advance(handle.run_at - clock.now())
                await anyio.wait_all_tasks_blocked()
                assert (handle.status, handle.attempt) == (JobStatus.RUNNING, attempt + 1)
            assert await handle == "third"
            assert handle.attempt == 3
            assert bg.stats().queues["default"].busy == 2  # the two threads still run
            release.set()
            with anyio.fail_after(30):  # generous: only a leaked slot keeps join() waiting
                await bg.join()
            stats = bg.stats().queues["default"]
            assert (stats.busy, stats.idle, stats.processed, stats.failed) == (0, 3, 3, 2)
    finally:
        release.set()
    # Each late return names the attempt whose thread it was, not the job's last attempt.
    late = [r.getMessage() for r in caplog.records if "after it was given up" in r.getMessage()]
    assert sorted(line.split("attempt=")[1][0] for line in late) == ["1", "2"], late


async def test_a_timed_out_sync_job_is_retried_while_its_first_thread_still_runs() -> None:
    # The first attempt's thread holds its thread-limiter token until it returns; the retry,
    # in another slot, must take a token of its own (it raised RuntimeError: "this borrower
    # is already holding one of this CapacityLimiter's tokens").
    clock = ManualClock()
    started, release = threading.Event(), threading.Event()
    calls = 0

    def first_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            release.wait(30)
            return "late"
        return "second try"

    async with Backburner(workers=2, clock=clock) as bg:
        handle = bg.options(timeout=1, retries=1, backoff=1, jitter=0).enqueue(first_hangs)
        await time_out_first_attempt(clock, started)  # its thread runs on
        assert handle.status is JobStatus.RETRYING
        clock.advance(1)
        try:
            assert await handle == "second try"
        finally:
            release.set()


class _LateEnds(logging.Handler):
    """Sets ``done`` once ``count`` jobs' threads returned after their job was given up."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.done = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "returned after it was given up" in record.getMessage():
            self.count -= 1
            if self.count == 0:
                self.done.set()


async def test_each_timed_out_attempt_gives_its_slot_back_when_its_thread_returns() -> None:
    # Two attempts of one job, both timed out, both threads running on: two slots held, and
    # both must come back (one did: the held slots were counted by job, not by attempt).
    clock = ManualClock()
    started = [threading.Event(), threading.Event()]
    release = threading.Event()
    calls = 0

    def always_hangs() -> None:
        nonlocal calls
        calls += 1
        started[calls - 1].set()
        release.wait(30)

    late_ends = _LateEnds(2)
    logging.getLogger("backburner").addHandler(late_ends)
    try:
        async with Backburner(workers=2, clock=clock) as bg:
            handle = bg.options(timeout=1, retries=1, backoff=1, jitter=0).enqueue(always_hangs)
            await time_out_first_attempt(clock, started[0])  # the retry waits a second
            clock.advance(1)
            await anyio.to_thread.run_sync(started[1].wait, 10)
            clock.advance(1)  # the second times out too: dead, both threads still running
            with pytest.raises(JobTimeout):
                await handle
            assert bg.stats().queues["default"].busy == 2
            release.set()
            await anyio.to_thread.run_sync(late_ends.done.wait, 10)
            assert bg.stats().queues["default"].busy == 0
    finally:
        release.set()
        logging.getLogger("backburner").removeHandler(late_ends)


async def test_a_timed_out_job_is_retried_when_its_options_say_so() -> None:
    clock = ManualClock()
    calls = 0

    async def first_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return "second try"

    async with Backburner(clock=clock) as bg:
        handle = bg.options(timeout=1, retries=1, backoff=1, jitter=0).enqueue(first_hangs)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)
        await bg.join()
        assert handle.status is JobStatus.RETRYING
        clock.advance(1)
        assert await handle == "second try"


async def test_a_unique_job_enqueued_twice_returns_the_live_job() -> None:
    gate = asyncio.Event()

    async def welcome(user_id: int) -> None:
        await gate.wait()

    async with Backburner() as bg:
        unique = bg.options(unique=lambda user_id: f"welcome:{user_id}")
        first = unique.enqueue(welcome, 7)
        assert unique.enqueue(welcome, 7) is first
        other = unique.enqueue(welcome, 8)
        assert other is not first
        gate.set()
        await bg.join()
        assert unique.enqueue(welcome, 7) is not first  # the key is free once it ended


async def test_a_unique_duplicate_can_raise_instead() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        unique = bg.options(unique="nightly-report", on_duplicate="raise")
        first = unique.enqueue_in(60, asyncio.sleep, 0)
        with pytest.raises(DuplicateJob, match="nightly-report") as info:
            unique.enqueue(asyncio.sleep, 0)
        assert info.value.existing is first


async def test_unique_keys_collapse_concurrent_enqueues_from_many_tasks_and_threads() -> None:
    gate = threading.Event()

    def hold(key: str) -> None:
        gate.wait(10)

    async with Backburner(workers=4) as bg:
        unique = bg.options(unique=lambda key: key)
        handles: list[Any] = []

        def from_thread() -> None:
            for _ in range(200):
                handles.append(unique.enqueue(hold, "k"))

        async def from_task() -> None:
            for _ in range(200):
                handles.append(unique.enqueue(hold, "k"))
                await asyncio.sleep(0)

        threads = [threading.Thread(target=from_thread) for _ in range(4)]
        for thread in threads:
            thread.start()
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(from_task)
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join)
        assert len({id(h) for h in handles}) == 1
        assert bg.stats().total.processed + bg.stats().total.busy + bg.stats().total.pending == 1
        gate.set()


@job(queue="mail", retries=2, timeout=30)
async def send_mail(to: str, queue: str = "inbox", retries: int = 0) -> tuple[str, str, int]:
    return to, queue, retries


async def test_job_decorator_options_apply_and_the_functions_own_keywords_pass_through() -> None:
    async with Backburner(queues={"mail": QueueConfig(workers=1)}) as bg:
        handle = bg.enqueue(send_mail, "a@example.com", queue="spam", retries=9)
        assert handle.queue == "mail"
        assert (handle.options.retries, handle.options.timeout) == (2, 30)
        assert await handle == ("a@example.com", "spam", 9)
        override = bg.options(retries=0).enqueue(send_mail, "b@example.com")
        assert (override.queue, override.options.retries) == ("mail", 0)
    assert await send_mail("direct") == ("direct", "inbox", 0)  # still a plain function


async def test_job_decorated_functions_work_with_background_before_any_executor_exists() -> None:
    # Declared at import time above, used here through the proxy.
    async with Backburner(queues={"mail": QueueConfig()}):
        handle = background.enqueue(send_mail, "c@example.com")
        assert handle.queue == "mail"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be from 0 to 1000"),
        ({"retries": 10**18}, "retries must be from 0 to 1000"),
        ({"timeout": 1e300}, r"timeout must be at most 315360000 seconds \(ten years\)"),
        ({"retries": 1.5}, "retries must be an int"),
        ({"retry_on": ValueError}, "retry_on must be a tuple of exception classes"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"jitter": 2}, "jitter is a fraction"),
        ({"unique": 42}, "unique must be a key"),
        ({"on_duplicate": "ignore"}, "on_duplicate must be"),
        ({"queue": ""}, "queue name must be a non-empty str"),
    ],
)
def test_bad_job_options_are_refused_where_they_are_written(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        job(**options)
    with pytest.raises((TypeError, ValueError), match=message):
        Backburner().options(**options)
