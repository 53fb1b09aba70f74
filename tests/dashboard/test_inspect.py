"""Pausing and resuming a queue, find_job, the listings and the history the dashboard draws."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backburner import Backburner, JobStatus, QueueConfig, QueueFull, ShuttingDown
from backburner._scheduler import Scheduler, Timer
from backburner.dashboard._inspect import history, pending_jobs, running_jobs, timed_jobs
from backburner.testing import ManualClock

from ..jobs import Gate, echo, fail, noop

pytestmark = pytest.mark.anyio


# Pause and resume.


async def test_a_paused_queue_accepts_jobs_and_starts_none_until_resumed() -> None:
    async with Backburner(workers=2) as bg:
        bg.pause("default")
        jobs = [bg.enqueue(echo, n) for n in range(3)]
        await asyncio.sleep(0)  # a loop turn in which an unpaused queue would start them
        assert [job.status for job in jobs] == [JobStatus.PENDING] * 3
        stats = bg.stats().queues["default"]
        assert (stats.paused, stats.pending, stats.busy) == (True, 3, 0)
        bg.resume("default")
        assert [await job for job in jobs] == [0, 1, 2]
        assert bg.stats().queues["default"].paused is False


async def test_pausing_lets_running_jobs_finish_and_starts_no_more() -> None:
    gate = Gate()
    async with Backburner(workers=1) as bg:
        running = bg.enqueue(gate.hold)
        waiting = bg.enqueue(echo, 7)
        await gate.started.wait()
        bg.pause("default")
        gate.opened.set()
        await running
        await bg.join()  # does not wait for a paused queue's waiting job
        assert waiting.status is JobStatus.PENDING
        bg.resume("default")
        assert await waiting == 7


async def test_pausing_one_queue_leaves_the_others_running() -> None:
    async with Backburner(queues={"mail": QueueConfig(workers=1)}) as bg:
        bg.pause("mail")
        held = bg.options(queue="mail").enqueue(echo, 1)
        assert await bg.enqueue(echo, 2) == 2
        assert held.status is JobStatus.PENDING
        assert bg.paused() == frozenset({"mail"})


async def test_a_paused_queue_still_takes_due_scheduled_jobs_without_starting_them() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        bg.pause("default")
        job = bg.enqueue_in(5, echo, 3)
        clock.advance(5)
        assert job.status is JobStatus.PENDING
        bg.resume("default")
        assert await job == 3


async def test_a_paused_queue_is_bounded_by_max_pending() -> None:

    async with Backburner(workers=1, max_pending=2) as bg:
        bg.pause("default")
        # One job more than max_pending fits: the free worker's slot counts as room.
        for n in range(3):
            bg.enqueue(echo, n)
        with pytest.raises(QueueFull):
            bg.enqueue(echo, 3)
        bg.resume("default")
        await bg.join()


async def test_at_shutdown_a_paused_queue_reports_its_waiting_jobs_not_started_at_once() -> None:
    bg = Backburner(shutdown_timeout=30)
    await bg.start()
    bg.pause("default")
    job = bg.enqueue(noop)
    began = time.monotonic()
    report = await bg.aclose()
    assert time.monotonic() - began < 10  # did not wait out the drain for a job that cannot start
    assert report.not_started == (job,)
    assert job.status is JobStatus.CANCELLED


async def test_starting_the_executor_keeps_a_pause_set_before_or_across_a_restart() -> None:
    bg = Backburner()
    bg.pause("default")  # before start: the queue starts paused
    assert bg.stats().queues["default"].paused
    async with bg:
        job = bg.enqueue(echo, 1)
        await asyncio.sleep(0)
        assert job.status is JobStatus.PENDING
    async with bg:  # started again: still paused
        assert bg.stats().queues["default"].paused
        again = bg.enqueue(echo, 2)
        await asyncio.sleep(0)
        assert again.status is JobStatus.PENDING
        bg.resume("default")
        assert await again == 2


async def test_resume_while_shutting_down_is_refused_with_a_reason() -> None:
    gate = Gate()
    bg = Backburner(shutdown_timeout=5)
    await bg.start()
    bg.enqueue(gate.hold)
    await gate.started.wait()
    bg.pause("default")
    closing = asyncio.ensure_future(bg.aclose())
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown, match="stays paused"):
        bg.resume("default")
    gate.opened.set()
    await closing


async def test_pause_and_resume_name_an_unknown_queue() -> None:
    bg = Backburner()
    with pytest.raises(ValueError, match=r"no queue named 'mial'.*\['default'\]"):
        bg.pause("mial")
    with pytest.raises(ValueError, match="no queue named"):
        bg.resume("mial")


async def test_pause_from_another_thread_takes_effect_on_the_loop() -> None:
    async with Backburner() as bg:
        await asyncio.to_thread(bg.pause, "default")
        await asyncio.sleep(0)
        assert bg.paused() == frozenset({"default"})
        await asyncio.to_thread(bg.resume, "default")
        await asyncio.sleep(0)
        assert await bg.enqueue(echo, 5) == 5


# Listings and find_job.


async def test_running_and_pending_listings_in_start_order_with_totals() -> None:
    gate = Gate()
    async with Backburner(workers=1, queues={"mail": QueueConfig(workers=1)}) as bg:
        busy = bg.enqueue(gate.hold)
        await gate.started.wait()
        waiting = [bg.enqueue(echo, n) for n in range(5)]
        waiting[1].cancel()
        mail = bg.options(queue="mail").enqueue(echo, 9)
        assert running_jobs(bg, "default") == [busy]
        assert set(running_jobs(bg)) <= {busy, mail}
        jobs, total = pending_jobs(bg, "default", offset=1, limit=2)
        assert (jobs, total) == ([waiting[2], waiting[3]], 4)
        jobs, total = pending_jobs(bg, None, offset=0, limit=10)
        assert total == 4 + (1 if mail.status is JobStatus.PENDING else 0)
        assert jobs[:4] == [waiting[0], waiting[2], waiting[3], waiting[4]]
        gate.opened.set()
        await bg.join()


async def test_scheduled_and_retrying_listings_soonest_first() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        late = bg.enqueue_in(60, echo, 1)
        soon = bg.enqueue_in(10, echo, 2)
        retrying = bg.options(retries=2, backoff=30, jitter=0).enqueue(fail, "again")
        await bg.join()
        assert retrying.status is JobStatus.RETRYING
        assert timed_jobs(bg, JobStatus.SCHEDULED) == ([soon, late], 2, True)
        assert timed_jobs(bg, JobStatus.SCHEDULED, offset=1, limit=5) == ([late], 2, True)
        assert timed_jobs(bg, JobStatus.RETRYING) == ([retrying], 1, True)
        soon.cancel()
        assert timed_jobs(bg, JobStatus.SCHEDULED) == ([late], 1, True)
        with pytest.raises(ValueError, match=r"SCHEDULED or JobStatus\.RETRYING"):
            timed_jobs(bg, JobStatus.PENDING)
        with pytest.raises(ValueError, match="no queue named"):
            timed_jobs(bg, JobStatus.SCHEDULED, queue="nope")


async def test_find_job_looks_in_running_pending_scheduled_retrying_and_failures() -> None:
    clock = ManualClock()
    gate = Gate()
    async with Backburner(workers=1, clock=clock) as bg:
        running = bg.enqueue(gate.hold)
        await gate.started.wait()
        pending = bg.enqueue(noop)
        scheduled = bg.enqueue_in(30, noop)
        for job in (running, pending, scheduled):
            assert bg.find_job(job.id) is job
        gate.opened.set()
        dead = bg.options(retries=1, backoff=1, jitter=0).enqueue(fail, "boom")
        await bg.join()
        assert bg.find_job(dead.id) is dead  # retrying
        clock.advance(1)
        await bg.join()
        assert dead.status is JobStatus.DEAD
        assert bg.find_job(dead.id) is dead  # in failures()
        assert bg.find_job(pending.id) is None  # succeeded: not kept
        assert bg.find_job("nope") is None
        with pytest.raises(TypeError, match="job's id"):
            bg.find_job(42)  # type: ignore[arg-type]


# History.


async def test_history_samples_throughput_failures_and_wait_per_interval() -> None:
    clock = ManualClock(start=1_000_000.0)
    async with Backburner(clock=clock, queues={"mail": QueueConfig()}) as bg:
        for n in range(3):
            bg.enqueue(echo, n)
        bg.enqueue(fail, "x")
        await bg.join()
        clock.advance(5)  # one sampling interval
        series = history(bg)
        [sample] = series["default"]
        assert (sample.processed, sample.failed, sample.started) == (4, 1, 4)
        assert sample.wait is not None
        assert 0 <= sample.wait < 5
        assert (sample.at, sample.seconds) == (1_000_005.0, 5.0)
        assert series["mail"][0].started == 0
        assert series["mail"][0].wait is None
        clock.advance(5)
        assert [s.processed for s in history(bg)["default"]] == [4, 0]


async def test_history_keeps_only_the_window_and_restarts_with_the_executor() -> None:
    clock = ManualClock(start=0.0)
    bg = Backburner(clock=clock)
    async with bg:
        clock.advance(3600)
        assert len(history(bg)["default"]) == 120  # ten minutes of five-second samples
    assert len(history(bg)["default"]) == 120  # readable after shutdown
    async with bg:
        assert history(bg) == {}


async def test_a_scheduled_job_waits_from_when_it_was_due_not_from_when_it_was_enqueued() -> None:
    clock = ManualClock(start=0.0)
    waits: list[Any] = []
    async with Backburner(clock=clock) as bg:
        job = bg.enqueue_in(4, noop)
        job.enqueued_at -= 3600  # as if enqueued an hour ago (the wall clock does not move)
        clock.advance(4)
        await bg.join()
        clock.advance(1)
        waits = [s.wait for s in history(bg)["default"] if s.started]
    [wait] = waits
    assert wait is not None
    assert wait < 60


class EarlyClock:
    """A clock whose timers the test fires by hand, possibly a little before their time."""

    def __init__(self) -> None:
        self.time = 100.0
        self.calls: list[tuple[float, Any]] = []

    def now(self) -> float:
        return self.time

    def call_at(self, when: float, callback: Any, loop: asyncio.AbstractEventLoop) -> Any:
        self.calls.append((when, callback))
        return asyncio.get_running_loop().call_later(3600, lambda: None)  # cancellable, inert


async def test_a_sampling_timer_that_fires_early_does_not_sample_the_same_interval_twice() -> None:
    clock = EarlyClock()
    async with Backburner(clock=clock) as bg:
        [(when, tick)] = [call for call in clock.calls if call[0] == 105.0]
        clock.time = when - 0.002  # the loop's timer ran 2 ms early
        tick()
        assert clock.calls[-1][0] == 110.0  # the next grid point, not 105 again
        [sample] = history(bg)["default"]
        assert sample.seconds == pytest.approx(4.998)


# Bounded work with a big schedule.


@given(
    whens=st.lists(st.integers(0, 50), max_size=60),
    cancelled=st.sets(st.integers(0, 59)),
    count=st.integers(0, 70),
    modulus=st.integers(1, 3),
)
@settings(deadline=None, max_examples=60)
def test_the_soonest_walk_matches_a_sort_of_the_live_accepted_entries(
    whens: list[int], cancelled: set[int], count: int, modulus: int
) -> None:
    async def check() -> None:
        scheduler = Scheduler(ManualClock(), asyncio.get_running_loop())
        timers = [scheduler.call_at(when, lambda arg: None, i) for i, when in enumerate(whens)]
        for i in cancelled & set(range(len(timers))):
            timers[i].cancel()
        live = sorted(
            (when, i) for i, when in enumerate(whens) if i not in cancelled and i % modulus == 0
        )
        found, complete = scheduler.soonest(lambda t: t.arg % modulus == 0, count, 10**6)
        assert complete
        assert [(when, timer.arg) for when, timer in found] == live[:count]
        scheduler.close()

    asyncio.run(check())


async def test_the_soonest_walk_visits_only_what_it_lists_and_stops_at_its_bound() -> None:
    scheduler = Scheduler(ManualClock(), asyncio.get_running_loop())
    for i in range(100_000):
        scheduler.call_at(1000.0 - i / 1000, lambda arg: None, i)
    asked: list[int] = []

    def accept(timer: Any) -> bool:
        asked.append(timer.arg)
        return True

    found, complete = scheduler.soonest(accept, 60, 10**6)
    assert complete
    assert len(found) == 60
    assert len(asked) == 60  # every entry visited is listed: O(k), not O(n)
    assert [timer.arg for _, timer in found] == list(range(99_999, 99_939, -1))
    asked.clear()

    def refuse(timer: Timer) -> bool:
        asked.append(1)
        return bool(timer.arg < 0)

    found, complete = scheduler.soonest(refuse, 10, 500)
    assert (found, complete, len(asked)) == ([], False, 500)
    scheduler.close()


async def test_timed_listings_of_a_big_schedule_walk_only_the_soonest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Backburner(clock=ManualClock(), max_scheduled=10**6) as bg:
        for i in range(100_000):
            bg.enqueue_in(3600 + i, echo, i)
        assert bg.scheduler is not None
        walk = bg.scheduler.soonest
        visits: list[int] = []

        def counted(accept: Any, count: int, max_visits: int) -> Any:
            def seen(timer: Any) -> bool:
                visits.append(1)
                return bool(accept(timer))

            return walk(seen, count, max_visits)

        monkeypatch.setattr(bg.scheduler, "soonest", counted)
        monkeypatch.setattr(bg.scheduler, "entries", None)  # no copy of the heap
        jobs, total, complete = timed_jobs(bg, JobStatus.SCHEDULED, offset=100, limit=50)
        assert (total, complete, len(visits)) == (100_000, True, 150)
        assert [job.args for job in jobs] == [(i,) for i in range(100, 150)]
        # No retries: the queues' counters say so, and the heap is not touched at all.
        visits.clear()
        assert timed_jobs(bg, JobStatus.RETRYING) == ([], 0, True)
        assert timed_jobs(bg, JobStatus.SCHEDULED, queue="default", offset=10**5) == (
            [],
            100_000,
            True,
        )
        assert visits == []


async def test_retrying_counts_follow_every_way_a_retry_comes_and_goes() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        queue = bg.queues()["default"]
        first = bg.options(retries=3, backoff=30, jitter=0).enqueue(fail, "a")
        second = bg.options(retries=3, backoff=30, jitter=0).enqueue(fail, "b")
        bg.enqueue_in(600, noop)
        await bg.join()
        assert queue.timed_counts() == (3, 2)
        assert timed_jobs(bg, JobStatus.RETRYING)[1:] == (2, True)
        assert timed_jobs(bg, JobStatus.SCHEDULED)[1:] == (1, True)
        second.cancel()
        assert queue.timed_counts() == (2, 1)
        clock.advance(30)  # the first comes due, fails again, waits again
        await bg.join()
        assert first.status is JobStatus.RETRYING
        assert queue.timed_counts() == (2, 1)
    # Closing drops what was still scheduled: nothing is left counted.
    assert queue.timed_counts() == (0, 0)


async def test_the_wait_counter_only_goes_up_whichever_way_a_job_becomes_ready() -> None:
    clock = ManualClock(start=0.0)
    gate = Gate()
    async with Backburner(clock=clock, workers=1) as bg:
        queue = bg.queues()["default"]
        seen = [queue.wait_totals()[1]]

        def look() -> None:
            seen.append(queue.wait_totals()[1])
            assert seen[-1] >= seen[-2], seen  # a counter: never down

        bg.enqueue(gate.hold)
        await gate.started.wait()
        # Due while the only worker is busy: it waits in the queue, counted from now.
        late = bg.enqueue_in(4, noop)
        late.enqueued_at -= 3600  # as if enqueued an hour ago
        clock.advance(4)
        look()
        assert late.status is JobStatus.PENDING
        # Due on an idle queue: starts at once.
        gate.opened.set()
        await bg.join()
        look()
        for i in range(50):
            bg.enqueue_in(1, echo, i).enqueued_at -= 3600
        clock.advance(1)
        look()
        await bg.join()
        look()
        # Retried by hand from the dead list, an hour after it was first enqueued.
        failed = bg.enqueue(fail, "once")
        await bg.join()
        failed.enqueued_at -= 3600
        bg.retry(failed)
        look()
        await bg.join()
        look()
        started, waited = queue.wait_totals()
        assert started == 54
        assert 0 <= waited < 60  # no job's schedule or hour in the dead list counted
