"""The executor: running jobs, bounds, failures, cancellation, context, stats, join."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import string
import sys
import threading
from collections.abc import Callable
from typing import Any
from unittest.mock import AsyncMock, Mock

import anyio
import anyio.to_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backburner import (
    Backburner,
    Job,
    JobCancelled,
    JobStatus,
    NotRunning,
    QueueConfig,
    QueueFull,
    ShuttingDown,
    background,
)
from backburner._context import current_executor_var
from backburner._errortext import MESSAGE_CHARS, TRACEBACK_CHARS, cut

from .jobs import add, fail, noop
from .steps import between_steps

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def multiply(a: int, b: int) -> int:
    return a * b


async def test_await_job_gives_an_async_jobs_result() -> None:
    async with Backburner() as bg:
        job = bg.enqueue(add, 2, b=3)
        assert await job == 5
        assert job.status is JobStatus.SUCCEEDED
        assert job.result() == 5


async def test_sync_job_runs_in_a_backburner_thread_not_on_the_loop() -> None:
    loop_thread = threading.current_thread()

    def where() -> str:
        assert threading.current_thread() is not loop_thread
        return threading.current_thread().name

    async with Backburner() as bg:
        assert (await bg.enqueue(where)).startswith("backburner-default-")
        assert await bg.enqueue(multiply, 6, 7) == 42


async def test_sync_jobs_do_not_use_anyios_shared_thread_limiter() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    async with Backburner(workers=3) as bg:
        jobs = [bg.enqueue(hold) for _ in range(3)]
        await anyio.to_thread.run_sync(started.wait, 10)
        # Starlette's sync endpoints share anyio's default limiter: jobs must leave it alone.
        assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        release.set()
        for job in jobs:
            await job


async def test_sync_job_can_call_back_into_the_loop_with_anyio_from_thread() -> None:
    def ask_loop() -> int:
        return anyio.from_thread.run(add, 1, 1)

    async with Backburner() as bg:
        assert await bg.enqueue(ask_loop) == 2


async def test_at_most_workers_jobs_run_at_once_and_the_rest_wait() -> None:
    gate = asyncio.Event()
    running = 0
    most = 0

    async def held() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1

    async with Backburner(workers=3) as bg:
        for _ in range(10):
            bg.enqueue(held)
        await anyio.wait_all_tasks_blocked()
        stats = bg.stats().queues["default"]
        assert (stats.busy, stats.idle, stats.pending) == (3, 0, 7)
        gate.set()
        await bg.join()
    assert most == 3
    assert bg.stats().total.processed == 10


async def test_a_saturated_queue_does_not_starve_another() -> None:
    gate = asyncio.Event()

    async def resize() -> None:
        await gate.wait()

    async with Backburner(workers=1, queues={"mail": QueueConfig(workers=1)}) as bg:
        for _ in range(5):
            bg.enqueue(resize)
        mail = bg.options(queue="mail").enqueue(add, 1, 2)
        assert await mail == 3  # while every image job still waits
        assert bg.stats().queues["default"].pending == 4
        gate.set()


async def test_enqueue_on_a_full_queue_raises_queue_full_naming_queue_and_limit() -> None:
    gate = asyncio.Event()
    async with Backburner(workers=1, max_pending=2) as bg:
        accepted = [bg.enqueue(gate.wait) for _ in range(3)]  # one runs, two wait
        with pytest.raises(QueueFull, match=r"queue 'default' is full.*max_pending=2") as info:
            bg.enqueue(gate.wait)
        assert (info.value.queue, info.value.max_pending) == ("default", 2)
        gate.set()
        await bg.join()
    assert all(job.status is JobStatus.SUCCEEDED for job in accepted)


async def test_aenqueue_waits_for_room_instead_of_raising() -> None:
    gate = asyncio.Event()
    async with Backburner(workers=1, max_pending=1) as bg:
        bg.enqueue(gate.wait)
        bg.enqueue(gate.wait)
        async with anyio.create_task_group() as tg:
            late: list[Any] = []

            async def enqueue_late() -> None:
                late.append(await bg.aenqueue(add, 1, 1))

            tg.start_soon(enqueue_late)
            await anyio.wait_all_tasks_blocked()
            assert not late  # still waiting for room
            gate.set()
        assert await late[0] == 2


async def test_aenqueue_waiting_for_room_raises_shutting_down_when_the_executor_stops() -> None:
    gate = asyncio.Event()
    bg = Backburner(workers=1, max_pending=1, shutdown_timeout=0.2)
    await bg.start()
    bg.enqueue(gate.wait)
    bg.enqueue(gate.wait)
    waiting = asyncio.ensure_future(bg.aenqueue(add, 1, 1))
    await anyio.wait_all_tasks_blocked()
    await bg.aclose()
    with pytest.raises(ShuttingDown):
        await waiting


async def test_enqueue_is_safe_from_many_threads_at_once() -> None:
    done = 0

    def count() -> None:
        nonlocal done
        done += 1  # runs on the loop: async job below

    async def bump() -> None:
        count()

    async with Backburner(workers=8, max_pending=100_000) as bg:

        def flood() -> None:
            for _ in range(2_000):
                bg.enqueue(bump)

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join)
        await bg.join()
    assert done == 16_000
    assert bg.stats().total.processed == 16_000


async def test_a_sync_job_can_enqueue_a_follow_up_through_background() -> None:
    async with Backburner() as bg:

        def first() -> Any:
            return background.enqueue(add, 20, 22)

        follow_up = await bg.enqueue(first)
        assert await follow_up == 42


async def test_failure_is_logged_with_id_name_and_traceback_and_the_worker_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str]] = []

    def on_error(job: Any, exc: BaseException) -> None:
        seen.append((job.id, str(exc)))

    async with Backburner(workers=1, on_error=on_error) as bg:
        job = bg.enqueue(fail, "boom")
        with pytest.raises(ValueError, match="boom"):
            await job
        assert await bg.enqueue(add, 1, 2) == 3  # the only worker still works
    assert job.status is JobStatus.FAILED
    assert seen == [(job.id, "boom")]
    [record] = [r for r in caplog.records if r.name == "backburner" and r.levelno == logging.ERROR]
    assert job.id in record.getMessage()
    assert "fail('boom')" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is job.exception()
    assert bg.failures() == [job]


class _NotAnException(BaseException):
    pass


#: What jobs raise that is not an ``Exception``: each must fail that job and nothing else.
NOT_EXCEPTIONS = [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), _NotAnException("x")]


def _raises(exc: BaseException) -> None:
    raise exc


async def _araises(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize("exc", NOT_EXCEPTIONS, ids=lambda exc: type(exc).__name__)
@pytest.mark.parametrize("kind", ["async", "async with a timeout", "sync"])
async def test_a_job_raising_a_base_exception_fails_alone_and_says_it_was_contained(
    caplog: pytest.LogCaptureFixture, exc: BaseException, kind: str
) -> None:
    fn: Any = _raises if kind == "sync" else _araises
    seen: list[BaseException] = []
    async with Backburner(workers=1, on_error=lambda job, exc: seen.append(exc)) as bg:
        enqueuer = bg.options(timeout=30) if kind == "async with a timeout" else bg
        job = enqueuer.enqueue(fn, exc)
        await job.wait()  # (`await job` would raise it here, as it raises any job's error)
        assert await bg.enqueue(add, 1, 2) == 3  # the only worker still works
    assert job.status is JobStatus.FAILED
    assert job.exception() is exc
    assert seen == [exc]
    assert bg.failures() == [job]
    assert bg.stats().total.failed == 1
    [record] = [r for r in caplog.records if r.name == "backburner" and r.levelno == logging.ERROR]
    message = record.getMessage()
    assert job.id in message
    assert f"{type(exc).__name__} raised by a job is contained: it ends this job only" in message


async def _fails_huge(size: int) -> None:
    raise ValueError("x" * size + " the end")


def _chained(depth: int) -> None:
    if depth:
        try:
            _chained(depth - 1)
        except ValueError as exc:
            raise ValueError(f"level {depth} " + "y" * 2000) from exc
    raise ValueError("the innermost")


async def test_a_ten_megabyte_failure_logs_a_few_kilobytes_with_the_frames_and_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = 10 * 1024 * 1024
    async with Backburner() as bg:
        job = bg.options(retries=1, backoff=0, jitter=0).enqueue(_fails_huge, size)
        await job.wait()
    assert len(str(job.exception())) > size  # the job keeps its exception whole
    retried, failed = [r for r in caplog.records if r.name == "backburner" and r.levelno >= 30]
    assert len(retried.getMessage()) < MESSAGE_CHARS + 500
    assert "more characters" in retried.getMessage()
    text = logging.Formatter().format(failed)
    assert len(text) < MESSAGE_CHARS + TRACEBACK_CHARS + 500
    assert job.id in text
    assert "in _fails_huge" in text  # the frame that raised
    assert text.endswith(" the end")  # and the end of the message
    assert failed.exc_info is None  # a formatter of its own cannot print it whole from there


@given(length=st.integers(0, 100_000), limit=st.integers(100, 20_000))
def test_cut_text_fits_its_limit_and_says_how_much_it_left_out(length: int, limit: int) -> None:
    text = "".join(string.ascii_letters[i % 52] for i in range(length))
    shown = cut(text, limit)
    if length <= limit:
        assert shown == text
        return
    assert len(shown) == limit
    match = re.fullmatch(r"(.*) \[\.\.\. (\d+) more characters \.\.\.\] (.*)", shown)
    assert match is not None
    head, left, tail = match.groups()
    assert text.startswith(head)
    assert text.endswith(tail)
    assert int(left) == length - len(head) - len(tail)


async def test_a_long_chain_of_exceptions_is_cut_keeping_the_end_where_it_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Backburner() as bg:
        job = bg.enqueue(_chained, 50)  # 50 chained errors of 2 KB each: 100 KB
        await job.wait()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_text is not None
    assert len(record.exc_text) <= TRACEBACK_CHARS
    assert record.exc_text.startswith("[... ")
    assert "characters of the traceback left out" in record.exc_text
    assert record.exc_text.endswith("ValueError: level 50 " + "y" * 2000)


async def test_failures_keeps_only_the_newest_keep_failed_jobs() -> None:
    async with Backburner(keep_failed=3) as bg:
        jobs = [bg.enqueue(fail, str(n)) for n in range(5)]
        await bg.join()
    assert bg.failures() == jobs[2:]
    for job in jobs:
        assert isinstance(job.exception(), ValueError)


async def test_an_on_error_hook_that_raises_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_hook(job: Any, exc: BaseException) -> None:
        raise RuntimeError("hook broke")

    async with Backburner(on_error=broken_hook) as bg:
        bg.enqueue(fail, "x")
        await bg.join()
        assert await bg.enqueue(add, 1, 1) == 2
    assert any("on_error hook failed" in r.getMessage() for r in caplog.records)


async def test_cancelling_a_pending_job_means_it_never_runs() -> None:
    gate = asyncio.Event()
    ran: list[int] = []

    async def record(n: int) -> None:
        ran.append(n)

    async with Backburner(workers=1) as bg:
        bg.enqueue(gate.wait)
        doomed = bg.enqueue(record, 1)
        kept = bg.enqueue(record, 2)
        assert doomed.cancel() is True
        assert doomed.status is JobStatus.CANCELLED
        assert bg.stats().total.pending == 1
        gate.set()
        await kept
        with pytest.raises(JobCancelled):
            await doomed
    assert ran == [2]
    assert doomed.cancel() is False  # already over


async def test_many_cancelled_pending_jobs_do_not_count_against_max_pending() -> None:
    gate = asyncio.Event()
    async with Backburner(workers=1, max_pending=100) as bg:
        bg.enqueue(gate.wait)
        for _round in range(5):
            jobs = [bg.enqueue(add, 1, 1) for _ in range(100)]
            for job in jobs:
                job.cancel()
        last = bg.enqueue(add, 2, 2)
        gate.set()
        assert await last == 4


async def test_cancelling_a_running_async_job_cancels_it_at_its_next_await() -> None:
    started = asyncio.Event()
    cleaned_up = False

    async def long() -> None:
        nonlocal cleaned_up
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up = True

    async with Backburner() as bg:
        job = bg.enqueue(long)
        await started.wait()
        assert job.cancel() is True
        with pytest.raises(JobCancelled):
            await job
    assert cleaned_up
    assert job.status is JobStatus.CANCELLED


async def test_a_running_sync_job_cannot_be_cancelled() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(10)
        return "done"

    async with Backburner() as bg:
        job = bg.enqueue(hold)
        await anyio.to_thread.run_sync(started.wait, 10)
        assert job.cancel() is False
        release.set()
        assert await job == "done"


async def test_a_job_sees_the_enqueuers_context_and_its_own_changes_do_not_leak() -> None:
    async def read_then_set() -> str:
        seen = request_id.get()
        request_id.set("changed by job")
        return seen

    def read_in_thread() -> str:
        return request_id.get()

    async with Backburner(workers=1) as bg:
        request_id.set("req-1")
        first = bg.enqueue(read_then_set)
        request_id.set("req-2")
        second = bg.enqueue(read_then_set)
        third = bg.enqueue(read_in_thread)
        assert (await first, await second, await third) == ("req-1", "req-2", "req-2")
    assert request_id.get() == "req-2"


async def its_task_name() -> str:
    task = asyncio.current_task()
    assert task is not None
    return task.get_name()


async def test_a_jobs_task_is_named_for_its_queue_and_function() -> None:
    # What `asyncio.all_tasks()` and asyncio's own warnings show for a running job.
    async with Backburner(queues={"mail": QueueConfig(workers=1)}) as bg:
        assert await bg.enqueue(its_task_name) == "backburner:default:its_task_name"
        mail = bg.options(queue="mail").enqueue(its_task_name)
        assert await mail == "backburner:mail:its_task_name"


async def test_a_task_factory_set_on_the_loop_makes_every_jobs_task() -> None:
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        async with Backburner(workers=2) as bg:
            jobs = [bg.enqueue(its_task_name) for _ in range(5)]  # two start at once, three wait
            names = [await job for job in jobs]
    finally:
        loop.set_task_factory(previous)
    assert names == ["backburner:default:its_task_name"] * 5
    assert [task.get_name() for task in made].count("backburner:default:its_task_name") == 5


async def test_a_job_whose_task_is_cancelled_before_it_runs_ends_cancelled() -> None:
    async with Backburner(workers=1) as bg:
        first, second = bg.enqueue(asyncio.sleep, 10), bg.enqueue(add, 1, 2)
        task = first.task  # made at enqueue (a worker was free); its first step is to come
        assert task is not None
        task.cancel()
        assert await second == 3  # the slot was freed
        assert first.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled):
            await first


async def test_a_job_whose_eager_task_is_cancelled_before_it_runs_ends_cancelled() -> None:
    # Under an eager factory a job's task has run its first step by the time it is known.
    loop = asyncio.get_running_loop()
    eager = None
    if isinstance(loop, asyncio.BaseEventLoop):  # (uvloop cannot take it: see above)
        eager = getattr(asyncio, "eager_task_factory", None)
    previous = loop.get_task_factory()
    loop.set_task_factory(eager or (lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw)))
    try:
        async with Backburner(workers=1) as bg:
            first, second = bg.enqueue(asyncio.sleep, 10), bg.enqueue(add, 1, 2)
            task = first.task
            assert task is not None
            task.cancel()
            assert await second == 3  # the slot was freed
            await bg.join()
            assert first.status is JobStatus.CANCELLED
    finally:
        loop.set_task_factory(previous)


def test_a_loop_whose_class_overrides_create_task_makes_every_jobs_task() -> None:
    made: list[str] = []

    class TracingLoop(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            task = super().create_task(coro, **kwargs)
            made.append(task.get_name())
            return task

    async def main() -> list[str]:
        async with Backburner(workers=1) as bg:
            jobs = [bg.enqueue(its_task_name) for _ in range(3)]  # one starts at once
            return [await job for job in jobs]

    loop = TracingLoop()
    try:
        names = loop.run_until_complete(main())
    finally:
        loop.close()
    assert names == ["backburner:default:its_task_name"] * 3
    assert made.count("backburner:default:its_task_name") == 3


async def test_jobs_drain_and_end_under_a_factory_that_starts_tasks_eagerly() -> None:
    # Python 3.12's eager_task_factory runs a task's first step inside create_task; a no-op
    # job ends there. (Before 3.12 there is none, and uvloop cannot take it: a factory that
    # makes plain tasks stands in.)
    loop = asyncio.get_running_loop()
    eager = None
    if isinstance(loop, asyncio.BaseEventLoop):  # asyncio's own loop, not uvloop's
        eager = getattr(asyncio, "eager_task_factory", None)
    previous = loop.get_task_factory()
    loop.set_task_factory(eager or (lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw)))
    try:
        async with Backburner(workers=1, max_pending=3000) as bg:
            gate = asyncio.Event()
            blocker = bg.enqueue(gate.wait)
            jobs = [bg.enqueue(add, n, 1) for n in range(2000)]  # a backlog behind it
            gate.set()
            await bg.join()
            assert [job.result() for job in jobs] == [n + 1 for n in range(2000)]
            assert blocker.status is JobStatus.SUCCEEDED
            assert bg.stats().queues["default"].busy == 0
            assert all(job.task is None for job in jobs)  # no ended job's task left running
            assert await bg.enqueue(its_task_name) == "backburner:default:its_task_name"
    finally:
        loop.set_task_factory(previous)


async def test_mocks_and_partials_run_as_jobs_under_readable_names() -> None:
    # A Mock answers any attribute (`.func` too, as a partial has): tests enqueue mocks.
    async with Backburner() as bg:
        async_mock, sync_mock = AsyncMock(return_value=5), Mock(return_value=6)
        jobs = [bg.enqueue(async_mock, 1), bg.enqueue(sync_mock, 2)]
        assert [await job for job in jobs] == [5, 6]
        async_mock.assert_awaited_once_with(1)
        sync_mock.assert_called_once_with(2)
        assert [job.name for job in jobs] == ["AsyncMock", "Mock"]
        partial = bg.enqueue(functools.partial(add, 1), 2)
        assert (await partial, partial.name) == (3, "partial(add)")


async def test_join_waits_for_jobs_that_jobs_enqueue() -> None:
    finished: list[int] = []

    async def chain(n: int) -> None:
        if n:
            background.enqueue(chain, n - 1)
        finished.append(n)

    async with Backburner() as bg:
        bg.enqueue(chain, 5)
        await bg.join()
        assert sorted(finished) == [0, 1, 2, 3, 4, 5]


async def test_stats_report_each_queue_and_the_total() -> None:
    async with Backburner(workers=2, queues={"mail": QueueConfig(workers=3)}) as bg:
        await bg.enqueue(add, 1, 1)
        bg.enqueue(fail, "x")
        await bg.join()
        stats = bg.stats()
    assert stats.queues["default"].as_dict() == {
        "name": "default",
        "workers": 2,
        "busy": 0,
        "idle": 2,
        "pending": 0,
        "scheduled": 0,
        "processed": 2,
        "failed": 1,
        "cancelled": 0,
        "dead": 0,
        "paused": False,
        "engine": "local",
        "enqueued": 0,
        "sent": 0,
        "send_failed": 0,
        "held": 0,
    }
    assert stats.queues["mail"].workers == 3
    assert (stats.total.workers, stats.total.processed, stats.total.failed) == (5, 2, 1)


async def test_stats_before_start_show_the_configured_sizes() -> None:
    stats = Backburner(workers=2).stats()
    assert (stats.total.workers, stats.total.idle, stats.total.processed) == (2, 2, 0)


async def test_enqueue_before_start_raises_not_running_saying_how_to_start() -> None:
    with pytest.raises(NotRunning, match=r"has not started.*lifespan"):
        Backburner().enqueue(add, 1, 2)


async def test_enqueue_after_shutdown_raises_not_running() -> None:
    async with Backburner() as bg:
        pass
    with pytest.raises(NotRunning, match="has shut down"):
        bg.enqueue(add, 1, 2)


async def test_an_executor_can_be_started_again_after_it_closed() -> None:
    bg = Backburner()
    for _ in range(2):
        async with bg:
            assert await bg.enqueue(add, 1, 2) == 3


async def test_awaiting_a_job_from_another_event_loop_works() -> None:
    async with Backburner() as bg:
        gate = asyncio.Event()
        job = bg.enqueue(gate.wait)

        def other_loop() -> None:
            asyncio.run(job.wait())

        waiter = threading.Thread(target=other_loop)
        waiter.start()
        gate.set()
        await job
        await anyio.to_thread.run_sync(waiter.join, 10)
        assert not waiter.is_alive()


async def test_a_job_ending_as_another_loop_begins_to_await_it_wakes_that_loop() -> None:
    # The other loop's `wait` saw the job running, then the job ended on the executor's loop
    # before that wait was among its waiters: it must still wake, not wait forever. A tracer
    # ends the job between those two moments, as the executor's thread may.
    loop = asyncio.get_running_loop()
    ended = threading.Event()
    triggered: list[bool] = []
    woke: list[bool] = []
    async with Backburner() as bg:
        gate = asyncio.Event()
        job = bg.enqueue(gate.wait)

        def end_it_now() -> None:  # in the other loop's thread, as its wait records itself
            if not triggered:
                triggered.append(True)
                loop.call_soon_threadsafe(gate.set)
                ended.wait(10)

        def other_loop() -> None:
            with between_steps(Job._more.__code__, end_it_now):
                try:
                    asyncio.run(asyncio.wait_for(job.wait(), 10))
                except asyncio.TimeoutError:
                    return
            woke.append(True)

        waiter = threading.Thread(target=other_loop)
        waiter.start()
        await job
        ended.set()
        await anyio.to_thread.run_sync(waiter.join, 20)
    assert triggered == [True]
    assert woke == [True]


async def test_inside_async_with_background_means_that_executor() -> None:
    async with Backburner() as outer:
        async with Backburner() as inner:
            assert background.executor is inner  # the innermost
            assert await background.enqueue(add, 1, 2) == 3
        assert background.executor is outer  # restored on the way out


async def _which_executor() -> Backburner:
    return background.executor


async def test_inside_a_job_background_means_the_executor_running_it() -> None:
    # Alone, the job's context need not name the executor; with two open, it must.
    async with Backburner() as first:
        assert await first.enqueue(_which_executor) is first
        from_thread: list[Job[Backburner]] = []  # a new thread's context names no executor
        thread = threading.Thread(target=lambda: from_thread.append(first.enqueue(_which_executor)))
        thread.start()
        await anyio.to_thread.run_sync(thread.join, 10)
        assert await from_thread[0] is first
        second = Backburner()
        await second.start()
        try:
            enqueued_from_first = second.enqueue(_which_executor)  # first's scope: bound
            assert await enqueued_from_first is second
            assert await first.enqueue(_which_executor) is first
        finally:
            await second.aclose()
        assert await first.enqueue(_which_executor) is first  # alone again


async def test_a_context_naming_a_closed_executor_gives_way_to_the_running_one() -> None:
    stale = Backburner()
    await stale.start()
    await stale.aclose()
    async with Backburner() as live:
        token = current_executor_var.set(stale)  # a closed app's scope, still current
        try:
            assert background.executor is live
            assert await live.enqueue(_which_executor) is live
        finally:
            current_executor_var.reset(token)


def _python_calls_while(action: Callable[[], object]) -> list[str]:
    """The Python functions ``action`` calls, by name (C functions are not counted)."""
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return [name for name in calls if name != "_python_calls_while"]


async def test_with_one_executor_open_finding_background_enqueue_runs_no_python_code() -> None:
    # The documented entry point must cost what bg.enqueue costs (issue 12): while one
    # executor is open, background.enqueue is its bound enqueue, found without a call of ours.
    async with Backburner() as bg:
        assert _python_calls_while(lambda: background.enqueue) == ["<lambda>"]
        assert background.enqueue == bg.enqueue
        assert await background.enqueue(add, 1, 2) == 3
        second = Backburner()
        await second.start()
        try:  # two open: each context says which one it means, read at each use
            assert "__get__" in _python_calls_while(lambda: background.enqueue)
            assert background.enqueue == bg.enqueue  # `async with bg:` named it
        finally:
            await second.aclose()
        assert _python_calls_while(lambda: background.enqueue) == ["<lambda>"]
    assert "__get__" in _python_calls_while(lambda: background.enqueue)


async def test_a_job_cancelled_right_after_enqueue_ends_and_frees_its_slot() -> None:
    # On the loop, with a worker free, enqueue starts the job's task at once; cancelling it
    # before its first step must still end the job and give the slot back.
    async with Backburner(workers=1) as bg:
        job = bg.enqueue(noop)
        assert job.cancel()
        await bg.join()  # returned: nothing is left running
        assert job.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled):
            await job
        assert bg.stats().total.busy == 0
        assert bg.stats().total.cancelled == 1
        assert await bg.enqueue(add, 1, 2) == 3  # the one worker is free again


async def test_an_on_error_hook_set_after_the_executor_was_made_is_called() -> None:
    seen: list[BaseException] = []
    bg = Backburner()
    bg.on_error = lambda job, exc: seen.append(exc)
    async with bg:
        with pytest.raises(ValueError, match="late hook"):
            await bg.enqueue(fail, "late hook")
    assert [str(exc) for exc in seen] == ["late hook"]
