"""The limits' gate against a model: random enqueues, ends, retries, snoozes and cancels.

Hypothesis drives one executor on a ``ManualClock`` through a random sequence of steps; after
each, the jobs' statuses must agree with what the limits promise:

* never more than ``max`` jobs of a key hold a ``ConcurrencyLimit`` (waiting for a worker or
  running), and ``stats().limits`` counts exactly those;
* a ``blocked`` job waits for a reason: its key (or the shared limit) is full, or an older job
  waits before it (no token leaked by a cancel, a retry or a snooze);
* jobs of one key with the same limits start in the order they were enqueued;
* a ``RateLimit`` never lets more than ``limit`` jobs start in any window of ``per`` seconds;
* and in the end every job ends: nothing is lost or stuck.

Jobs with the per-key limit alone are enqueued either way: through ``options(...)`` (admission)
or, declared with ``@job``, through ``enqueue``'s lean path; the two share their keys' lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backburner import Backburner, ConcurrencyLimit, Job, JobStatus, RateLimit, Snooze
from backburner import job as job_options
from backburner.testing import ManualClock

T = TypeVar("T")

KEYS = ("a", "b", "c")
PER_KEY, ALL, RATE, PER = 2, 3, 2, 3
TOKEN_HOLDERS = (JobStatus.PENDING, JobStatus.RUNNING)
ENDINGS = ("ok", "snooze", "fail", "back off")


class LimitsGate(RuleBasedStateMachine):
    """One executor and its jobs; each job runs until a rule tells it how to end."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.per_key = ConcurrencyLimit(PER_KEY, key=lambda key, n: key, name="per-key")
        self.all = ConcurrencyLimit(ALL, name="all")
        self.rate = RateLimit(RATE, per=PER, name="rate")
        self.bg = Backburner(workers=4, clock=self.clock, shutdown_timeout=0.5)
        self.run(self.bg.__aenter__())
        self.jobs: dict[int, Job[int]] = {}
        self.keys: dict[int, str] = {}
        self.endings: dict[int, asyncio.Future[str]] = {}
        self.starts: list[int] = []  # job numbers, at each attempt's start
        self.rated_starts: list[float] = []  # clock times of the rate-limited jobs' starts

        # The same job with its one limit declared by @job: `enqueue` takes its lean path.
        async def lone(key: str, n: int) -> int:
            return await self.work(key, n)

        self.lone = job_options(limits=[self.per_key], retries=1, backoff=1, jitter=0)(lone)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def settle(self) -> None:
        async def steps() -> None:
            for _ in range(20):
                await asyncio.sleep(0)

        self.run(steps())

    async def work(self, key: str, n: int) -> int:
        self.starts.append(n)
        if self.rate in self.jobs[n].options.limits:
            self.rated_starts.append(self.clock.now())
        ending = self.endings[n] = self.loop.create_future()
        how = await ending
        if how == "snooze":
            raise Snooze(1)
        if how == "back off":
            raise Snooze(2, limit=self.per_key if n % 2 else self.rate)
        if how == "fail":
            raise ValueError("a failed attempt (retried once)")
        return n

    @rule(
        key=st.sampled_from(KEYS),
        shared=st.booleans(),
        rated=st.booleans(),
        cancel=st.booleans(),
        lean=st.booleans(),
    )
    def enqueue(self, key: str, shared: bool, rated: bool, cancel: bool, lean: bool) -> None:
        n = len(self.jobs) + 1
        limits: list[ConcurrencyLimit | RateLimit] = [self.per_key]
        limits += [self.all] if shared else []
        limits += [self.rate] if rated else []
        if lean and limits == [self.per_key]:  # (the same limits: the same line of its key)
            self.jobs[n], self.keys[n] = self.bg.enqueue(self.lone, key, n), key
        else:
            enqueue = self.bg.options(limits=limits, retries=1, backoff=1, jitter=0).enqueue
            self.jobs[n], self.keys[n] = enqueue(self.work, key, n), key
        if cancel:  # at once: a job started now is cancelled before its first step
            self.jobs[n].cancel()
        self.settle()

    @rule(data=st.data(), how=st.sampled_from(ENDINGS))
    def end_one(self, data: st.DataObject, how: str) -> None:
        running = sorted(n for n, ending in self.endings.items() if not ending.done())
        if running:
            self.endings[data.draw(st.sampled_from(running))].set_result(how)
            self.settle()

    @rule(data=st.data())
    def cancel_one(self, data: st.DataObject) -> None:
        live = sorted(n for n, job in self.jobs.items() if not job.done())
        if live:
            self.jobs[data.draw(st.sampled_from(live))].cancel()
            self.settle()

    @rule()
    def tick(self) -> None:
        self.clock.advance(1)
        self.settle()

    def holders(self, limit: ConcurrencyLimit, key: str | None = None) -> list[int]:
        return [
            n
            for n, job in self.jobs.items()
            if job.status in TOKEN_HOLDERS
            and limit in job.options.limits
            and key in (None, self.keys[n])
        ]

    @invariant()
    def concurrency_is_kept_and_counted(self) -> None:
        for key in KEYS:
            assert len(self.holders(self.per_key, key)) <= PER_KEY
        assert len(self.holders(self.all)) <= ALL
        counted = {stats.name: stats.running for stats in self.bg.stats().limits}
        assert counted.get("per-key", 0) == len(self.holders(self.per_key))
        assert counted.get("all", 0) == len(self.holders(self.all))

    @invariant()
    def held_jobs_are_counted_by_their_queue_and_their_limit(self) -> None:
        held = sum(1 for job in self.jobs.values() if job.status.held)
        stats = self.bg.stats()
        assert stats.queues["default"].held == held
        assert sum(limit.held for limit in stats.limits) == held

    @invariant()
    def a_blocked_job_waits_for_a_reason(self) -> None:
        if any(stats.backoff_until is not None for stats in self.bg.stats().limits):
            return  # (a job blocked before a Snooze backs its limit off stays "blocked")
        for n, job in self.jobs.items():
            if job.status is not JobStatus.BLOCKED:
                continue
            key = self.keys[n]
            shared = self.all in job.options.limits
            older = [m for m in range(1, n) if self.jobs[m].status.held]
            assert (
                len(self.holders(self.per_key, key)) >= PER_KEY
                or (shared and len(self.holders(self.all)) >= ALL)
                or any(self.keys[m] == key for m in older)
                or (shared and any(self.all in self.jobs[m].options.limits for m in older))
            ), (n, self.bg.stats().limits)

    @invariant()
    def jobs_of_a_key_start_in_enqueue_order(self) -> None:
        first: dict[int, int] = {}
        for i, n in enumerate(self.starts):
            first.setdefault(n, i)
        for n in first:
            for m in range(1, n):
                if (self.keys[m], self.jobs[m].options.limits) != (
                    self.keys[n],
                    self.jobs[n].options.limits,
                ):
                    continue
                assert first[m] < first[n] if m in first else self.jobs[m].done(), (m, n)

    @invariant()
    def no_window_has_more_starts_than_the_rate_allows(self) -> None:
        starts = self.rated_starts
        for t in starts:
            assert sum(t <= u < t + PER for u in starts) <= RATE, starts

    def teardown(self) -> None:
        try:
            for _ in range(200):  # let every job end: each round ends the running ones
                for ending in list(self.endings.values()):
                    if not ending.done():
                        ending.set_result("ok")
                self.clock.advance(1)
                self.settle()
                if all(job.done() for job in self.jobs.values()):
                    break
            stuck = {n: job.status for n, job in self.jobs.items() if not job.done()}
            assert not stuck, (stuck, self.bg.stats().limits)
            stats = self.bg.stats()
            assert stats.total.pending == stats.total.busy == 0
            assert all(limit.held == 0 for limit in stats.limits)
            assert all(limit.running == 0 for limit in stats.limits if limit.per is None)
        finally:
            self.run(self.bg.__aexit__(None, None, None))
            self.loop.close()


LimitsGate.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
test_the_limits_gate_against_a_model = LimitsGate.TestCase
