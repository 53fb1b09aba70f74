"""Limits: ConcurrencyLimit and RateLimit per key, Snooze, debounce, and what shows them."""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backburner import (
    Backburner,
    ConcurrencyLimit,
    DuplicateJob,
    Job,
    JobStatus,
    QueueConfig,
    QueueFull,
    RateLimit,
    Snooze,
    _job,
    job,
)
from backburner._queue import JobQueue
from backburner.testing import ManualClock
from tests.jobs import Gate
from tests.steps import between_steps

pytestmark = pytest.mark.anyio


async def settle() -> None:
    """Let the loop run the callbacks and the first steps of tasks made so far."""
    for _ in range(5):
        await asyncio.sleep(0)


# ConcurrencyLimit.


async def test_jobs_of_one_key_run_one_at_a_time_in_enqueue_order() -> None:
    ran: list[tuple[str, int]] = []
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    @job(limits=[ConcurrencyLimit(1, key=lambda key, n: key)])
    async def work(key: str, n: int) -> None:
        running[key] = running.get(key, 0) + 1
        most[key] = max(most.get(key, 0), running[key])
        await settle()
        ran.append((key, n))
        running[key] -= 1

    async with Backburner(workers=8) as bg:
        for n in range(5):
            for key in "abc":
                bg.enqueue(work, key, n)
        await bg.join()
    assert most == {"a": 1, "b": 1, "c": 1}
    for key in "abc":
        assert [n for k, n in ran if k == key] == [0, 1, 2, 3, 4]


def one_per_key(gate: Gate) -> Callable[[str], Coroutine[Any, Any, str]]:
    """A job limited to one at a time per key (its argument); the key "slow" holds until
    ``gate`` opens."""

    @job(limits=[ConcurrencyLimit(1, key=lambda key: key)])
    async def work(key: str) -> str:
        if key == "slow":
            await gate.hold()
        return key

    return work


async def test_a_held_job_holds_no_worker_so_other_keys_run_past_it() -> None:
    gate = Gate()
    work = one_per_key(gate)

    async with Backburner(workers=2) as bg:
        first = bg.enqueue(work, "slow")
        await gate.started.wait()
        held = [bg.enqueue(work, "slow") for _ in range(3)]
        assert [j.status for j in held] == [JobStatus.BLOCKED] * 3
        assert held[0].held_by == "concurrency(1)"
        other = bg.enqueue(work, "other")  # the second worker is free: held jobs took none
        assert await other == "other"
        assert first.status is JobStatus.RUNNING
        gate.opened.set()
        assert [await j for j in held] == ["slow"] * 3


async def test_one_key_with_a_hundred_waiting_never_occupies_more_than_one_worker() -> None:
    busy: list[int] = []
    limit = ConcurrencyLimit(1)

    async def work(bg: Backburner) -> None:
        busy.append(bg.stats().queues["default"].busy)
        await settle()

    async with Backburner(workers=8) as bg:
        for _ in range(101):
            bg.options(limits=[limit]).enqueue(work, bg)
        stats = bg.stats()
        assert stats.limits[0].held == 100
        default = stats.queues["default"]
        assert (default.busy, default.pending, default.held) == (1, 100, 100)
        await bg.join()
    assert len(busy) == 101
    assert max(busy) == 1


async def test_one_limit_object_on_two_functions_is_one_budget() -> None:
    shared = ConcurrencyLimit(1, name="upstream")
    gate = Gate()

    @job(limits=[shared])
    async def one() -> None:
        await gate.hold()

    @job(limits=[shared])
    async def two() -> None:
        pass

    async with Backburner(workers=4) as bg:
        first = bg.enqueue(one)
        await gate.started.wait()
        second = bg.enqueue(two)
        assert second.status is JobStatus.BLOCKED
        assert second.held_by == "upstream"
        (stats,) = bg.stats().limits
        assert (stats.name, stats.running, stats.held) == ("upstream", 1, 1)
        gate.opened.set()
        await first
        await second


async def test_a_key_function_that_fails_or_returns_no_str_raises_at_enqueue() -> None:
    def broken(n: int) -> str:
        raise KeyError(n)

    async with Backburner() as bg:
        with pytest.raises(TypeError, match=r"key function of limit 'per-n' failed.*KeyError"):
            bg.options(limits=[ConcurrencyLimit(1, key=broken, name="per-n")]).enqueue(_echo, 1)
        with pytest.raises(TypeError, match="must return a str"):
            bg.options(limits=[ConcurrencyLimit(1, key=lambda n: n)]).enqueue(_echo, 1)
        assert bg.stats().total.pending == 0


# `enqueue` of a function whose one limit is a ConcurrencyLimit takes a lean path of its own
# (no admission call): what admission does for it, it must still do.


async def test_a_lean_enqueue_checks_the_call_before_its_key_and_keeps_nothing_it_refused() -> None:
    def broken(n: int) -> str:
        raise KeyError(n)

    @job(limits=[ConcurrencyLimit(1, key=broken, name="per-n")])
    async def work(n: int) -> None:
        pass

    @job(limits=[ConcurrencyLimit(1, key=lambda n: n)])
    async def numbered(n: int) -> None:
        pass

    async with Backburner() as bg:
        with pytest.raises(TypeError, match="arguments do not fit"):  # not the key function's
            bg.enqueue(work, 1, 2)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"key function of limit 'per-n' failed.*KeyError"):
            bg.enqueue(work, 1)
        with pytest.raises(TypeError, match="must return a str"):
            bg.enqueue(numbered, 1)
        stats = bg.stats()
        assert (stats.total.pending, stats.total.enqueued) == (0, 0)
        assert all(limit.running == limit.held == 0 for limit in stats.limits)


async def test_a_lean_enqueue_refused_by_a_full_queue_takes_no_token_of_its_key() -> None:
    gate = Gate()
    work = one_per_key(gate)

    async with Backburner(workers=1, max_pending=1) as bg:
        slow = bg.enqueue(work, "slow")
        await gate.started.wait()
        waiting = bg.enqueue(work, "a")  # waits for the worker (a token of "a" taken)
        with pytest.raises(QueueFull):
            bg.enqueue(work, "b")  # refused: "b" must not count it
        assert {s.name: (s.running, s.held) for s in bg.stats().limits} == {
            "concurrency(1)": (2, 0)
        }
        gate.opened.set()
        assert (await slow, await waiting) == ("slow", "a")
        assert await bg.enqueue(work, "b") == "b"  # its key is free: it runs at once


async def test_a_job_held_by_a_lean_enqueue_is_cancelled_and_the_next_of_its_key_runs() -> None:
    gate = Gate()
    ran: list[int] = []

    @job(limits=[ConcurrencyLimit(1, key=lambda key, n: key)])
    async def work(key: str, n: int) -> None:
        if n == 0:
            await gate.hold()
        ran.append(n)

    async with Backburner(workers=4) as bg:
        jobs = [bg.enqueue(work, "k", n) for n in range(5)]
        await gate.started.wait()
        assert [j.status for j in jobs[1:]] == [JobStatus.BLOCKED] * 4
        assert jobs[1].held_by == "concurrency(1)"
        assert jobs[2].cancel()
        stats = bg.stats()
        assert (stats.limits[0].held, stats.queues["default"].held) == (3, 3)
        gate.opened.set()
        await bg.join()
        assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.CANCELLED] + [
            JobStatus.SUCCEEDED
        ] * 2
        stats = bg.stats()
        assert (stats.limits[0].running, stats.limits[0].held) == (0, 0)
        assert (stats.queues["default"].held, stats.total.pending) == (0, 0)
    assert ran == [0, 1, 3, 4]


async def test_a_cancelled_held_job_never_runs_and_the_rest_go_on() -> None:
    gate = Gate()
    ran: list[int] = []
    limit = ConcurrencyLimit(1)

    async def work(n: int) -> None:
        if n == 0:
            await gate.hold()
        ran.append(n)

    async with Backburner(workers=2) as bg:
        enq = bg.options(limits=[limit])
        jobs = [enq.enqueue(work, n) for n in range(3)]
        await gate.started.wait()
        assert jobs[1].cancel()
        assert jobs[1].status is JobStatus.CANCELLED
        gate.opened.set()
        await bg.join()
        assert bg.stats().total.pending == 0
    assert ran == [0, 2]


async def test_a_retry_gives_its_slot_back_while_it_waits_and_passes_the_limit_again() -> None:
    clock = ManualClock()
    calls: list[str] = []

    @job(limits=[ConcurrencyLimit(1)], retries=1, backoff=10, jitter=0)
    async def flaky(name: str) -> None:
        calls.append(name)
        if name == "flaky" and calls.count("flaky") == 1:
            raise ValueError("once")

    async with Backburner(workers=2, clock=clock) as bg:
        first = bg.enqueue(flaky, "flaky")
        await settle()
        assert first.status is JobStatus.RETRYING
        other = bg.enqueue(flaky, "other")  # the retrying job holds no slot of the limit
        await other
        clock.advance(10)
        await first
    assert calls == ["flaky", "other", "flaky"]
    assert first.attempt == 2


async def test_a_timed_out_sync_job_gives_its_limits_back_so_its_retry_can_start() -> None:
    clock = ManualClock()
    release = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    attempts: list[int] = []

    @job(limits=[ConcurrencyLimit(1)], timeout=5, retries=1, backoff=1, jitter=0)
    def stuck() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            loop.call_soon_threadsafe(started.set)
            release.wait(60)  # its thread runs on past the timeout
        return "second"

    try:
        async with Backburner(workers=2, clock=clock) as bg:
            handle = bg.enqueue(stuck)
            await started.wait()
            clock.advance(5)  # the first attempt times out; its retry is due a second later
            await settle()
            assert handle.status is JobStatus.RETRYING
            release.set()
            await bg.join()  # its thread has returned: its worker slot is free again
            clock.advance(1)
            assert await handle == "second"  # it passed its limit again: no token leaked
    finally:
        release.set()


async def test_cancelling_a_limited_job_waiting_for_a_worker_lets_the_next_of_its_key_go() -> None:
    gate = Gate()
    limit = ConcurrencyLimit(1, key=lambda n: "k")

    async def work(n: int) -> int:
        return n

    async with Backburner(workers=1) as bg:
        bg.enqueue(gate.hold)  # the only worker is busy
        await gate.started.wait()
        waiting = bg.options(limits=[limit]).enqueue(work, 1)  # its token taken, no worker
        held = bg.options(limits=[limit]).enqueue(work, 2)
        assert (waiting.status, held.status) == (JobStatus.PENDING, JobStatus.BLOCKED)
        assert waiting.cancel()
        assert held.status is JobStatus.PENDING
        gate.opened.set()
        assert await held == 2


async def test_a_limited_job_cancelled_before_its_first_step_gives_its_tokens_back() -> None:
    limit = ConcurrencyLimit(1)

    async def work(n: int) -> int:
        return n

    async with Backburner(workers=2) as bg:
        enq = bg.options(limits=[limit])
        first = enq.enqueue(work, 1)  # started: its task is made, not yet run
        second = enq.enqueue(work, 2)
        assert (first.status, second.status) == (JobStatus.RUNNING, JobStatus.BLOCKED)
        assert first.cancel()  # its task is cancelled before `_run` ever runs
        await settle()
        assert first.status is JobStatus.CANCELLED
        assert bg.stats().limits[0].running <= 1  # (second's token, once it was let go)
        assert second.status is not JobStatus.BLOCKED
        assert await second == 2
        assert bg.stats().limits[0].running == 0


def _live_jobs_of(fn: Any) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Job) and o.fn is fn)


async def _noop(n: int) -> int:
    return n


async def test_a_cancelled_limited_job_waiting_for_its_time_is_let_go_of() -> None:
    """Scheduled, retrying or snoozed: its place in the limits goes with it (no leak)."""
    clock = ManualClock()
    async with Backburner(clock=clock, keep_results=0) as bg:  # (no lookup() keeps them)
        enq = bg.options(limits=[ConcurrencyLimit(1)])
        for n in range(10):
            assert enq.enqueue_in(5, _noop, n).cancel()
        clock.advance(10)  # the scheduler drops its cancelled entries
        await settle()
        assert _live_jobs_of(_noop) == 0


async def test_a_cancelled_held_job_is_found_cancelled() -> None:
    gate = Gate()
    limit = ConcurrencyLimit(1)
    async with Backburner(workers=2) as bg:
        bg.options(limits=[limit]).enqueue(gate.hold)
        await gate.started.wait()
        held = bg.options(limits=[limit]).enqueue(_echo, 1)
        assert held.status is JobStatus.BLOCKED
        assert held.cancel()
        info = await bg.lookup(held.id)
        assert info is not None
        assert info.status is JobStatus.CANCELLED
        gate.opened.set()


async def test_aenqueue_of_a_limited_job_returns_it_held() -> None:
    gate = Gate()
    limit = ConcurrencyLimit(1)
    async with Backburner() as bg:
        first = await bg.options(limits=[limit]).aenqueue(gate.hold)
        await gate.started.wait()
        second = await bg.options(limits=[limit]).aenqueue(_echo, 2)
        assert second.status is JobStatus.BLOCKED
        gate.opened.set()
        await first
        assert await second == 2


async def test_one_limit_holds_jobs_across_queues_and_each_starts_on_its_own_queue() -> None:
    gate = Gate()
    shared = ConcurrencyLimit(1)
    async with Backburner(workers=1, queues={"mail": QueueConfig(workers=1)}) as bg:
        first = bg.options(limits=[shared]).enqueue(gate.hold)
        await gate.started.wait()
        mail = bg.options(limits=[shared], queue="mail").enqueue(_echo, "mail")
        assert mail.status is JobStatus.BLOCKED
        assert bg.stats().queues["mail"].held == 1
        gate.opened.set()
        await first
        assert await mail == "mail"


async def test_a_paused_queue_keeps_the_jobs_its_limit_lets_go_until_it_resumes() -> None:
    gate = Gate()
    limit = ConcurrencyLimit(1)
    async with Backburner(workers=2) as bg:
        first = bg.options(limits=[limit]).enqueue(gate.hold)
        await gate.started.wait()
        second = bg.options(limits=[limit]).enqueue(_echo, 2)
        bg.pause("default")
        gate.opened.set()
        await first
        assert second.status is JobStatus.PENDING  # let go by its limit, held by the pause
        bg.resume("default")
        assert await second == 2


async def test_a_unique_limited_job_returns_its_holder_and_frees_its_key_at_its_end() -> None:
    gate = Gate()
    limit = ConcurrencyLimit(1)

    @job(limits=[limit], unique=lambda n: f"n:{n}")
    async def once(n: int) -> int:
        if n == 0:
            await gate.hold()
        return n

    async with Backburner(workers=2) as bg:
        blocker = bg.enqueue(once, 0)
        await gate.started.wait()
        held = bg.enqueue(once, 1)
        assert bg.enqueue(once, 1) is held  # the held job holds its key
        gate.opened.set()
        await blocker
        assert await held == 1
        again = bg.enqueue(once, 1)
        assert again is not held
        assert await again == 1


# RateLimit.


async def test_a_rate_limit_holds_jobs_past_the_window_and_lets_them_go_as_it_slides() -> None:
    clock = ManualClock()
    limit = RateLimit(2, per=10)
    async with Backburner(workers=8, clock=clock) as bg:
        jobs = [bg.options(limits=[limit]).enqueue(_echo, n) for n in range(5)]
        await settle()
        assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.THROTTLED] * 3
        (stats,) = bg.stats().limits
        assert (stats.running, stats.held, stats.next_free) == (2, 3, clock.now() + 10)
        clock.advance(9.9)
        await settle()
        assert jobs[2].status is JobStatus.THROTTLED
        clock.advance(0.1)
        await settle()
        assert [j.status for j in jobs[2:]] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.THROTTLED]
        clock.advance(10)
        assert await jobs[4] == 4


async def test_a_rate_window_counts_a_job_from_its_start_not_from_when_it_was_let_go() -> None:
    """A job let go while every worker is busy starts late: the next may not start sooner
    than a window after it (counting from its release, both could start in one window)."""
    clock = ManualClock()
    gate = Gate()
    limit = RateLimit(1, per=10)
    async with Backburner(workers=1, clock=clock) as bg:
        bg.enqueue(gate.hold)
        await gate.started.wait()
        late = bg.options(limits=[limit]).enqueue(_echo, "late")  # let go: waits for the worker
        after = bg.options(limits=[limit]).enqueue(_echo, "after")
        assert (late.status, after.status) == (JobStatus.PENDING, JobStatus.THROTTLED)
        clock.advance(10)
        gate.opened.set()
        assert await late == "late"  # starts now, ten seconds after it was let go
        await settle()
        assert after.status is JobStatus.THROTTLED
        clock.advance(9.9)
        await settle()
        assert after.status is JobStatus.THROTTLED
        clock.advance(0.1)
        assert await after == "after"


async def test_a_rate_limited_job_cancelled_before_it_started_uses_none_of_the_window() -> None:
    clock = ManualClock()
    gate = Gate()
    limit = RateLimit(1, per=3600)
    async with Backburner(workers=1, clock=clock) as bg:
        bg.enqueue(gate.hold)  # the only worker is busy
        await gate.started.wait()
        waiting = bg.options(limits=[limit]).enqueue(_echo, 1)  # let go: waits for a worker
        held = bg.options(limits=[limit]).enqueue(_echo, 2)
        assert (waiting.status, held.status) == (JobStatus.PENDING, JobStatus.THROTTLED)
        assert waiting.cancel()
        await settle()
        assert held.status is JobStatus.PENDING  # the window's one start is free again
        gate.opened.set()
        assert await held == 2
        (stats,) = bg.stats().limits
        assert stats.running == 1  # one start in the window: the job that ran


async def test_jobs_with_two_limits_start_in_enqueue_order_whichever_limit_held_them() -> None:
    clock = ManualClock()
    gate = Gate()
    one, rate = ConcurrencyLimit(1), RateLimit(1, per=10)
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)

    async with Backburner(workers=4, clock=clock) as bg:
        await bg.options(limits=[rate]).enqueue(work, "fills the window")
        older = bg.options(limits=[one, rate]).enqueue(work, "older")  # held by the rate
        bg.options(limits=[one]).enqueue(gate.hold)  # takes the concurrency slot
        await gate.started.wait()
        newer = bg.options(limits=[one, rate]).enqueue(work, "newer")  # held by the slot
        assert (older.status, newer.status) == (JobStatus.THROTTLED, JobStatus.BLOCKED)
        clock.advance(10)  # the window has room: the older job now waits for the slot too
        await settle()
        gate.opened.set()
        await settle()  # the slot is free: the older job goes first, the newer waits 10s
        clock.advance(10)
        await older
        await newer
    assert ran == ["fills the window", "older", "newer"]


async def test_a_rate_window_with_a_job_let_go_but_not_started_is_never_swept_away() -> None:
    clock = ManualClock()
    limit = RateLimit(2, per=10)
    other = ConcurrencyLimit(1_000_000, key=lambda n: str(n))
    starts: list[float] = []

    async def work() -> None:
        starts.append(clock.now())

    async with Backburner(workers=2, queues={"paused": QueueConfig(workers=1)}, clock=clock) as bg:
        bg.pause("paused")
        late = bg.options(limits=[limit], queue="paused").enqueue(work)  # let go, not started
        await bg.options(limits=[limit]).enqueue(work)  # starts first: out of order
        clock.advance(10)
        for n in range(1100):  # enough entries for the gate to sweep its idle keys
            bg.options(limits=[other]).enqueue(_echo, n)
        await bg.join()
        now = [bg.options(limits=[limit]).enqueue(work) for _ in range(2)]
        bg.resume("paused")
        await late
        await settle()
        clock.advance(10)
        for handle in now:
            await handle
    assert len(starts) == 4
    for t in starts:
        assert sum(t <= u < t + 10 for u in starts) <= 2, starts


async def test_rate_limit_keys_have_windows_of_their_own() -> None:
    clock = ManualClock()
    limit = RateLimit(1, per=60, key=lambda key, n: key)
    async with Backburner(clock=clock) as bg:
        a = [bg.options(limits=[limit]).enqueue(_echo2, "a", n) for n in range(2)]
        b = bg.options(limits=[limit]).enqueue(_echo2, "b", 0)
        await settle()
        assert a[0].status is JobStatus.SUCCEEDED
        assert b.status is JobStatus.SUCCEEDED
        assert a[1].status is JobStatus.THROTTLED


async def test_a_job_held_by_both_limits_waits_for_each() -> None:
    clock = ManualClock()
    gate = Gate()
    concurrency, rate = ConcurrencyLimit(1), RateLimit(1, per=5)

    async def work(n: int) -> None:
        if n == 0:
            await gate.hold()

    async with Backburner(workers=4, clock=clock) as bg:
        enq = bg.options(limits=[concurrency, rate])
        first, second = enq.enqueue(work, 0), enq.enqueue(work, 1)
        await gate.started.wait()
        assert second.status is JobStatus.BLOCKED
        clock.advance(5)
        await settle()
        assert second.status is JobStatus.BLOCKED  # the window has room; the slot does not
        gate.opened.set()
        await first
        await second


# Snooze.


async def test_snooze_runs_the_job_again_later_without_counting_a_failed_attempt() -> None:
    clock = ManualClock()
    tries: list[int] = []

    async def upstream() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise Snooze(30)
        return "ok"

    async with Backburner(clock=clock) as bg:
        handle = bg.enqueue(upstream)  # retries=0: a failure would be final
        await settle()
        assert handle.status is JobStatus.SCHEDULED
        assert handle.run_at == clock.now() + 30
        assert bg.stats().total.failed == 0
        clock.advance(30)
        assert await handle == "ok"
        assert handle.attempt == 1
        assert bg.stats().total.failed == 0


@pytest.mark.parametrize(
    "api",
    [
        pytest.param(RateLimit(100, per=1, name="api"), id="rate"),
        # Its one limit: `enqueue` takes the lean path, which must wait out the back-off too.
        pytest.param(ConcurrencyLimit(2, name="api"), id="concurrency-lean"),
    ],
)
async def test_snooze_with_a_limit_backs_the_whole_limit_off(
    api: RateLimit | ConcurrencyLimit,
) -> None:
    clock = ManualClock()
    tries: list[str] = []

    @job(limits=[api])
    async def call(name: str) -> str:
        tries.append(name)
        if name == "first" and tries.count("first") == 1:
            raise Snooze(20, limit=api)
        return name

    async with Backburner(clock=clock) as bg:
        first = bg.enqueue(call, "first")
        await settle()
        other = bg.enqueue(call, "other")  # the limit has room, but backs off
        assert other.status is JobStatus.THROTTLED
        assert bg.stats().limits[0].backoff_until == clock.now() + 20
        clock.advance(19)
        await settle()
        assert other.status is JobStatus.THROTTLED
        clock.advance(1)
        assert await other == "other"
        assert await first == "first"
    assert tries == ["first", "other", "first"] or tries == ["first", "first", "other"]


# Debounce.


async def test_debounce_turns_a_burst_into_one_run_with_the_last_arguments() -> None:
    clock = ManualClock()
    runs: list[str] = []

    @job(unique=lambda doc, text: f"index:{doc}", debounce=5)
    async def index(doc: int, text: str) -> None:
        runs.append(text)

    async with Backburner(clock=clock) as bg:
        first = bg.enqueue(index, 1, "a")
        assert first.status is JobStatus.SCHEDULED
        clock.advance(4)
        assert bg.enqueue(index, 1, "ab") is first
        clock.advance(4)  # 8s after the first edit, 4s after the last: still waiting
        await settle()
        assert runs == []
        assert bg.enqueue(index, 1, "abc") is first
        clock.advance(5)
        await first
        assert runs == ["abc"]


async def test_debounce_with_on_duplicate_raise_still_replaces_a_waiting_job() -> None:
    clock = ManualClock()

    @job(unique="k", debounce=5, on_duplicate="raise")
    async def index(text: str) -> str:
        return text

    async with Backburner(clock=clock) as bg:
        waiting = bg.enqueue(index, "a")
        assert bg.enqueue(index, "b") is waiting
        clock.advance(5)
        await settle()
        gate_job = waiting  # it ran: a new enqueue is a new job
        assert await gate_job == "b"


def test_debounce_needs_unique() -> None:
    with pytest.raises(ValueError, match="debounce needs unique"):
        job(debounce=1)


# Shutdown, visibility, validation.


async def test_held_jobs_are_reported_at_shutdown_like_waiting_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    gate = Gate()
    limit, rate = ConcurrencyLimit(1), RateLimit(1, per=60)

    async def blocker() -> None:
        await gate.hold()

    bg = Backburner(workers=4, clock=clock, shutdown_timeout=1, cancel_grace=0.5)
    await bg.start()
    running = bg.options(limits=[limit]).enqueue(blocker)
    await gate.started.wait()
    blocked = bg.options(limits=[limit]).enqueue(_echo, 1)
    bg.options(limits=[rate]).enqueue(_echo, 2)
    throttled = bg.options(limits=[rate]).enqueue(_echo, 3)
    assert (blocked.status, throttled.status) == (JobStatus.BLOCKED, JobStatus.THROTTLED)
    gate.opened.set()  # the blocker ends; the blocked job runs; the throttled one waits on
    with caplog.at_level(logging.WARNING, logger="backburner"):
        report = await bg.aclose()
    await running
    assert await blocked == 1
    assert report.not_started == (throttled,)
    assert throttled.status is JobStatus.CANCELLED
    assert throttled.id in caplog.text


async def test_held_jobs_are_listed_oldest_first_within_one_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Jobs accepted within one millisecond share their enqueue time (one float for all):
    # the order they were accepted in still says which is the oldest, in the listing and in
    # the shutdown report, whatever order their keys were first seen in.
    monkeypatch.setattr(_job, "_now", lambda: 1_800_000_000.0)  # all in one millisecond
    monkeypatch.setattr(_job, "_stamp", 0.0)
    gate = Gate()

    @job(limits=[ConcurrencyLimit(1, key=lambda key, n: key)])
    async def work(key: str, n: int) -> None:
        await gate.opened.wait()

    bg = Backburner(workers=8, shutdown_timeout=1, cancel_grace=0.5)
    await bg.start()
    bg.enqueue(work, "x", 0)  # key "x" first seen, and taken
    bg.enqueue(work, "y", 0)
    older, newer = bg.enqueue(work, "y", 1), bg.enqueue(work, "x", 1)  # both held
    assert older.enqueued_at == newer.enqueued_at
    queue = bg.queues()["default"]
    assert queue.held_jobs() == [older, newer]
    assert queue.held_jobs(1) == [older]
    report = await bg.aclose()
    assert report.not_started == (older, newer)


async def test_a_job_let_go_on_another_thread_as_shutdown_takes_the_waiting_jobs_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A thread cancels a waiting job whose key holds the next one; the next one is handed to
    # its queue just as shutdown takes the queue's waiting jobs. It must not be left pending
    # in a line nobody reads: it is cancelled and named.
    gate = Gate()
    work = one_per_key(gate)
    reached, go = threading.Event(), threading.Event()

    def pause_once() -> None:
        if not reached.is_set():
            reached.set()
            go.wait(10)

    bg = Backburner(workers=1, shutdown_timeout=1, cancel_grace=0.5)
    await bg.start()
    bg.enqueue(work, "slow")  # the one worker, busy until the gate opens
    await gate.started.wait()
    first = bg.enqueue(work, "k")  # waits for the worker, holding key "k"
    second = bg.enqueue(work, "k")  # held: "k" is taken
    assert (first.status, second.status) == (JobStatus.PENDING, JobStatus.BLOCKED)

    def cancel_first() -> None:
        # (Its limit hands `second` to its queue's way in: paused at that way's first step.)
        with between_steps(JobQueue._to_pending.__code__, pause_once):
            first.cancel()

    canceller = threading.Thread(target=cancel_first)
    canceller.start()
    await anyio.to_thread.run_sync(reached.wait, 10)
    gate.opened.set()
    with caplog.at_level(logging.WARNING, logger="backburner"):
        report = await bg.aclose()
        go.set()
        await anyio.to_thread.run_sync(canceller.join, 10)
    assert first.status is JobStatus.CANCELLED
    assert second not in report.not_started  # (the report was made before it came)
    assert second.status is JobStatus.CANCELLED
    assert second.id in caplog.text


async def test_held_jobs_count_as_pending_and_join_waits_for_them() -> None:
    clock = ManualClock()
    limit = RateLimit(1, per=10)
    async with Backburner(clock=clock) as bg:
        jobs = [bg.options(limits=[limit]).enqueue(_echo, n) for n in range(2)]
        await settle()
        assert bg.stats().total.pending == 1
        joined = asyncio.ensure_future(bg.join())
        await settle()
        assert not joined.done()
        clock.advance(10)
        await joined
        assert jobs[1].status is JobStatus.SUCCEEDED


async def test_find_job_finds_a_held_job_and_the_queue_lists_it() -> None:
    clock = ManualClock()
    limit = RateLimit(1, per=10)
    async with Backburner(clock=clock) as bg:
        bg.options(limits=[limit]).enqueue(_echo, 0)
        held = bg.options(limits=[limit]).enqueue(_echo, 1)
        await settle()  # the first starts: the window counts it from its start
        assert bg.find_job(held.id) is held
        assert bg.queues()["default"].held_jobs() == [held]
        clock.advance(10)
        await held


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ConcurrencyLimit(0), ValueError, "max must be 1 or more"),
        (lambda: ConcurrencyLimit(_bad(1.5)), TypeError, "max must be an int"),
        (lambda: RateLimit(1, per=0), ValueError, "per must be more than 0"),
        (lambda: RateLimit(1, per=1, key=_bad(3)), TypeError, "key must be"),
        (lambda: RateLimit(1, per=1, scope=_bad("box")), ValueError, "scope must be"),
        (lambda: Snooze(-1), ValueError, "Snooze"),
        (lambda: job(limits=_bad(ConcurrencyLimit(1))), TypeError, "limits must be a list"),
        (lambda: job(limits=[_bad("x")]), TypeError, "limits takes"),
    ],
)
def test_bad_limits_are_refused_where_written(
    make: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


class Region(str, enum.Enum):
    """A str Enum: its members are str, with a `__str__` of their own ("Region.EU")."""

    EU = "eu"


def test_a_str_subclass_key_keeps_its_value_as_a_plain_str() -> None:
    # Its value is the bucket's key (and a host limit's file's): the subclass's own
    # `__str__` must not rename it.
    limit = ConcurrencyLimit(1, key=Region.EU)
    assert limit.key == "eu"
    assert type(limit.key) is str
    assert limit.key_for(None, (), {}) == "eu"


# With a journal.

one_at_a_time = ConcurrencyLimit(1, name="journaled")
journaled_runs: list[int] = []


@job(name="tests.limits.journaled", limits=[one_at_a_time])
async def journaled(n: int) -> int:
    journaled_runs.append(n)
    await settle()
    return n


@job(name="tests.limits.debounced", unique="d", debounce=1)
async def debounced() -> None:
    pass


async def test_held_durable_jobs_stay_in_the_journal_and_run_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"
    journaled_runs.clear()
    bg = Backburner(journal=path, workers=4)
    await bg.open()  # accepts, runs nothing: the first takes the slot, the rest are held
    jobs = [bg.enqueue(journaled, n) for n in range(4)]
    assert [j.status for j in jobs[1:]] == [JobStatus.BLOCKED] * 3
    report = await bg.aclose()
    assert {j.id for j in report.not_started} == {j.id for j in jobs}
    async with Backburner(journal=path, workers=4) as again:
        await again.join()
        assert again.stats().limits[0].running == 0
    assert journaled_runs == [0, 1, 2, 3]


async def test_debounce_is_refused_with_a_journal_at_the_call_site(tmp_path: Path) -> None:
    async with Backburner(journal=tmp_path / "jobs.sqlite3") as bg:
        with pytest.raises(ValueError, match="debounce is not available with a journal"):
            bg.enqueue(debounced)


async def test_a_unique_key_still_refuses_a_running_duplicate_with_debounce() -> None:
    gate = Gate()

    @job(unique="only", debounce=0.001, on_duplicate="raise")
    async def slow() -> None:
        await gate.hold()

    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        first = bg.enqueue(slow)
        clock.advance(1)
        await gate.started.wait()
        with pytest.raises(DuplicateJob):
            bg.enqueue(slow)
        gate.opened.set()
        await first


def _bad(value: object) -> Any:
    """A value of the wrong type, past the type checker: what the checks at run time see."""
    return value


async def _echo(value: Any) -> Any:
    return value


async def _echo2(key: str, n: int) -> tuple[str, int]:
    return key, n


# The window's arithmetic, against a model.


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 4),
    per=st.integers(1, 5),
    arrivals=st.lists(st.integers(0, 3), min_size=1, max_size=12),
)
def test_a_rate_limit_starts_each_job_as_soon_as_its_window_allows(
    limit: int, per: int, arrivals: list[int]
) -> None:
    """Start i is the first tick at or after its enqueue, after start i-1, and ``per`` after
    start i-limit: never more than ``limit`` starts in any window, and no start later."""
    starts = asyncio.run(_run_ticks(RateLimit(limit, per=per), arrivals))
    expected: list[int] = []
    enqueued = [tick for tick, count in enumerate(arrivals) for _ in range(count)]
    for i, arrived in enumerate(enqueued):
        earliest = max(arrived, expected[-1] if expected else 0)
        if i >= limit:
            earliest = max(earliest, expected[i - limit] + per)
        expected.append(earliest)
    assert starts == expected


async def _run_ticks(limit: RateLimit, arrivals: list[int]) -> list[int]:
    clock = ManualClock(0)
    starts: list[int] = []

    async def record() -> None:
        starts.append(round(clock.now()))

    async with Backburner(workers=16, clock=clock) as bg:
        total = sum(arrivals)
        tick = 0
        while len(starts) < total:
            for _ in range(arrivals[tick] if tick < len(arrivals) else 0):
                bg.options(limits=[limit]).enqueue(record)
            await settle()
            clock.advance(1)
            tick += 1
            await settle()
    return starts


# The dashboard.


async def test_the_dashboard_lists_limits_and_held_jobs_and_a_job_page_names_its_limit() -> None:
    import httpx

    from backburner.dashboard import dashboard

    gate = Gate()
    limit = ConcurrencyLimit(1, name="one-at-a-time")
    async with Backburner(workers=2) as bg:
        bg.options(limits=[limit]).enqueue(gate.hold)
        await gate.started.wait()
        held = bg.options(limits=[limit]).enqueue(_echo, "held")
        transport = httpx.ASGITransport(app=dashboard(bg, auth=("a", "pw")))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            data = (await client.get("/api/overview", auth=("a", "pw"))).json()
            (shown,) = data["limits"]
            assert (shown["name"], shown["running"], shown["held"]) == ("one-at-a-time", 1, 1)
            assert [(j["id"], j["held_by"]) for j in data["held"]] == [(held.id, "one-at-a-time")]
            page = (await client.get("/", auth=("a", "pw"))).text
            assert "one-at-a-time" in page
            assert held.id in page
            pending = (await client.get("/api/pending", auth=("a", "pw"))).json()
            assert (pending["total"], pending["jobs"]) == (0, [])  # held: listed apart
            job_page = (await client.get(f"/jobs/{held.id}", auth=("a", "pw"))).text
            assert "Held by" in job_page
            assert "blocked" in job_page
        gate.opened.set()
        await held


async def test_a_finished_limited_job_is_kept_for_lookup_like_any_other() -> None:
    limit = ConcurrencyLimit(1)

    async def answer() -> int:
        return 42

    async with Backburner() as bg:
        done = bg.options(limits=[limit]).enqueue(answer)
        assert await done == 42
        info = await bg.lookup(done.id)
        assert info is not None
        assert (info.status, info.result) == (JobStatus.SUCCEEDED, 42)
        assert done.task is None  # kept without its task (nor its context)


async def test_shutdown_gives_back_the_tokens_of_jobs_waiting_for_a_worker() -> None:
    gate = Gate()
    five, rate = ConcurrencyLimit(5, name="five"), RateLimit(100, per=60, name="rate")

    async def work(n: int) -> None:
        await gate.hold()

    bg = Backburner(workers=1, shutdown_timeout=0.5)
    await bg.start()
    jobs = [bg.options(limits=[five, rate]).enqueue(work, n) for n in range(3)]
    await gate.started.wait()  # the first runs; the others passed their limits, no worker
    assert {s.name: s.running for s in bg.stats().limits} == {"five": 3, "rate": 3}
    report = await bg.aclose()
    assert report.not_started == tuple(jobs[1:])
    # The one that ran counts in its rate window (it started); none holds a token any more.
    assert {s.name: (s.running, s.held) for s in bg.stats().limits} == {
        "five": (0, 0),
        "rate": (1, 0),
    }


async def test_held_jobs_count_in_full_against_max_pending_while_workers_are_free() -> None:
    gate = Gate()
    one = ConcurrencyLimit(1)

    async def work(n: int) -> None:
        await gate.hold()

    async with Backburner(workers=10, max_pending=1) as bg:
        bg.options(limits=[one]).enqueue(work, 0)
        await gate.started.wait()
        held = bg.options(limits=[one]).enqueue(work, 1)  # the one waiting job max_pending allows
        assert held.status is JobStatus.BLOCKED
        # Nine workers are free, but a held job can take none of them: the queue is full.
        with pytest.raises(QueueFull):
            bg.options(limits=[one]).enqueue(work, 2)
        with pytest.raises(QueueFull):
            bg.enqueue(gate.hold)  # (a plain job too: the room is the queue's)
        stats = bg.stats().queues["default"]
        assert (stats.pending, stats.held, stats.busy) == (1, 1, 1)
        gate.opened.set()
        await bg.join()


async def test_a_job_moved_to_another_limit_keeps_its_place_past_a_cancelled_one() -> None:
    # X is held by L1, then moves to L2's line when L1 frees: it goes before the jobs held
    # by L2 that were enqueued after it, even with one cancelled among them.
    l1, l2 = ConcurrencyLimit(1, name="L1"), ConcurrencyLimit(1, name="L2")
    gates = {"A": Gate(), "B": Gate()}
    order: list[str] = []

    async def work(name: str) -> None:
        order.append(name)
        if name in gates:
            await gates[name].hold()

    async with Backburner(workers=8) as bg:
        bg.options(limits=[l2]).enqueue(work, "A")  # takes L2
        bg.options(limits=[l1]).enqueue(work, "B")  # takes L1
        await gates["A"].started.wait()
        await gates["B"].started.wait()
        x = bg.options(limits=[l1, l2]).enqueue(work, "X")  # held by L1
        n1 = bg.options(limits=[l2]).enqueue(work, "N1")  # held by L2, newer than X
        cancelled = bg.options(limits=[l2]).enqueue(work, "C")
        bg.options(limits=[l2]).enqueue(work, "N2")
        assert (x.held_by, n1.held_by) == ("L1", "L2")
        assert cancelled.cancel()
        gates["B"].opened.set()
        await settle()
        assert x.held_by == "L2"  # L1 let it go; L2 holds it now
        gates["A"].opened.set()
        await bg.join()
    assert order == ["A", "B", "X", "N1", "N2"]
