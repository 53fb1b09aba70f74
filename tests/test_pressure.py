"""Yielding to requests: the AIMD controller, fed fake signals on a ManualClock, and the queue
that honours its effective count (running jobs go on, waiting ones wait).

The controller here has no heartbeat (``beat=None``): the loop's lag is only what the test
tells it, so a slow machine cannot move a decision. Decisions come every 0.1 s of the
ManualClock, when the test advances it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator

import pytest

from backburner import (
    Backburner,
    ConcurrencyLimit,
    JobStatus,
    QueueConfig,
    YieldToRequests,
    job,
)
from backburner._pressure import Yielding
from backburner.testing import ManualClock

from .jobs import Gate

pytestmark = pytest.mark.anyio

TARGET = 0.01  # the lag target of these tests, in seconds
OVER = 0.05  # a lag five times the target
BAND = 0.007  # between half the target and the target: the hysteresis band
CALM = 0.0
STEP = 0.1  # the controller's interval


class FakeQueue:
    """What the controller drives: a name, workers, and the effective counts it was given."""

    def __init__(self, name: str, workers: int) -> None:
        self.name = name
        self.workers = workers
        self.given: list[int] = []

    def set_effective_workers(self, count: int) -> None:
        self.given.append(count)

    @property
    def effective(self) -> int:
        return self.given[-1] if self.given else self.workers


class RemoteLike:
    """A queue whose jobs run elsewhere: no effective count to set."""

    name = "remote"
    workers = 4


class Controlled:
    """A started controller over fake queues, a ManualClock to step it."""

    def __init__(self, yielding: Yielding, clock: ManualClock, queues: list[FakeQueue]) -> None:
        self.yielding = yielding
        self.clock = clock
        self.queues = queues

    def step(self, lag: float = CALM, *latencies: float) -> None:
        """One interval in which a request came, the loop ran ``lag`` late, and these requests
        were answered."""
        self.yielding.request_arrived()
        self.yielding.lag(lag)
        for seconds in latencies:
            self.yielding.request_answered(seconds)
        self.clock.advance(STEP)

    def counts(self) -> list[int]:
        return [queue.effective for queue in self.queues]


async def controlled(
    config: YieldToRequests, *queues: FakeQueue, cooldown: float = 1.0
) -> Controlled:
    clock = ManualClock()
    yielding = Yielding(config, clock, beat=None, interval=STEP, cooldown=cooldown)
    listed = list(queues)
    yielding.start(asyncio.get_running_loop(), lambda: [*listed, RemoteLike()])
    return Controlled(yielding, clock, listed)


@pytest.fixture
async def eight() -> AsyncIterator[Controlled]:
    """A queue of 8 workers, floor 1, lag target 10 ms."""
    control = await controlled(YieldToRequests(target_lag=TARGET), FakeQueue("default", 8))
    yield control
    control.yielding.stop()


# The controller.


async def test_lag_past_the_target_halves_the_effective_workers_each_step(
    eight: Controlled,
) -> None:
    seen = []
    for _ in range(3):
        eight.step(OVER)
        seen.append(eight.counts()[0])
    assert seen == [4, 2, 1]


async def test_a_lag_past_the_target_cuts_at_once_and_once_an_interval(eight: Controlled) -> None:
    # A job that starts before the interval's end holds the loop for all its steps: the cut
    # comes with the lag, and the decision that ends the interval makes no second one.
    eight.yielding.request_arrived()
    eight.yielding.lag(OVER)
    assert eight.counts() == [4]  # at once: the clock has not moved
    eight.yielding.lag(2 * OVER)
    assert eight.counts() == [4]
    eight.clock.advance(STEP)  # the interval's decision
    assert eight.counts() == [4]
    eight.step(OVER)  # the next interval: one more cut
    assert eight.counts() == [2]


async def test_a_lag_with_no_request_to_feel_it_cuts_nothing_at_once(eight: Controlled) -> None:
    eight.yielding.lag(OVER)
    assert eight.counts() == [8]


async def test_the_floor_holds_however_long_the_pressure_lasts(eight: Controlled) -> None:
    for _ in range(10):
        eight.step(OVER)
    assert eight.counts() == [1]
    assert eight.queues[0].given == [4, 2, 1]  # set when it changed, not every step


async def test_a_floor_of_two_and_a_floor_above_a_queues_workers() -> None:
    control = await controlled(
        YieldToRequests(target_lag=TARGET, floor=2), FakeQueue("big", 8), FakeQueue("small", 1)
    )
    for _ in range(10):
        control.step(OVER)
    assert control.counts() == [2, 1]  # the small queue keeps its one worker
    control.yielding.stop()


async def test_a_floor_of_zero_lets_jobs_stop_starting() -> None:
    control = await controlled(YieldToRequests(target_lag=TARGET, floor=0), FakeQueue("q", 4))
    for _ in range(5):
        control.step(OVER)
    assert control.counts() == [0]
    control.yielding.stop()
    assert control.counts() == [4]  # stop gives every worker back


async def test_when_calm_again_workers_come_back_one_a_step_after_the_cooldown() -> None:
    # A cooldown of 0.95 s: the tenth calm step (1.0 s) is past it, the ninth (0.9 s) not.
    config = YieldToRequests(target_lag=TARGET)
    eight = await controlled(config, FakeQueue("default", 8), cooldown=0.95)
    for _ in range(3):
        eight.step(OVER)
    assert eight.counts() == [1]
    for _ in range(9):  # 0.9 s calm: still within the cooldown of 1 s since the last pressure
        eight.step(CALM)
    assert eight.counts() == [1]
    seen = []
    for _ in range(10):
        eight.step(CALM)
        seen.append(eight.counts()[0])
    assert seen == [2, 3, 4, 5, 6, 7, 8, 8, 8, 8]  # additive, and never past the workers
    eight.yielding.stop()


#: A cooldown a hair under 1 s, so that the ManualClock's sums of 0.1 s steps (0.9999...) pass
#: it at the tenth step; doubled: 1.98, 3.96, 7.92 s (the cap: 8 times it), 20, 40, 80 steps.
COOLDOWN = 0.99


def calm_steps_until_given_back(control: Controlled, limit: int = 200) -> int:
    """Calm steps until the queue's effective count rises (a worker comes back)."""
    before = control.counts()[0]
    for steps in range(1, limit + 1):
        control.step(CALM)
        if control.counts()[0] > before:
            return steps
    raise AssertionError(f"no worker came back in {limit} calm steps")


def failed_probe_waits(control: Controlled, probes: int, *, given: int, cut: int) -> list[int]:
    """The calm steps before each of ``probes`` workers given back (the count then ``given``),
    each followed by the pressure the job it started brings back (the count then ``cut``)."""
    waits = []
    for _ in range(probes):
        waits.append(calm_steps_until_given_back(control))
        assert control.counts() == [given]
        control.step(OVER)
        assert control.counts() == [cut]
    return waits


async def test_a_worker_given_back_that_brings_the_pressure_back_doubles_the_next_wait() -> None:
    # floor=0, as an app that wants requests first sets it: while the requests stay pressed,
    # each worker given back is a probe that costs them a job; the probes grow rarer (1, 2,
    # 4, 8 s), never rarer than max_cooldown (8 times the cooldown by default).
    control = await controlled(
        YieldToRequests(target_lag=TARGET, floor=0), FakeQueue("q", 4), cooldown=COOLDOWN
    )
    for _ in range(3):
        control.step(OVER)
    assert control.counts() == [0]
    waits = failed_probe_waits(control, 5, given=1, cut=0)
    # (The first wait counts from the last cut: 10 steps of 0.1 s is the cooldown of 1 s.)
    assert waits == [10, 20, 40, 80, 80]
    control.yielding.stop()


async def test_pressure_not_following_a_worker_given_back_does_not_lengthen_the_wait() -> None:
    control = await controlled(
        YieldToRequests(target_lag=TARGET, floor=0), FakeQueue("q", 4), cooldown=COOLDOWN
    )
    control.step(OVER)  # 4 -> 2
    assert calm_steps_until_given_back(control) == 10
    for _ in range(10):  # a second in the band after the worker came back: the probe held
        control.step(BAND)
    assert control.counts() == [3]
    control.step(OVER)  # pressure, but not the worker's doing
    assert control.counts() == [1]
    assert calm_steps_until_given_back(control) == 10
    control.yielding.stop()


async def test_once_every_worker_is_back_the_wait_is_the_cooldown_again() -> None:
    control = await controlled(
        YieldToRequests(target_lag=TARGET, floor=0), FakeQueue("q", 2), cooldown=COOLDOWN
    )
    control.step(OVER)
    control.step(OVER)
    for _ in range(2):  # two failed probes: the wait is now 4 s
        calm_steps_until_given_back(control)
        control.step(OVER)
    assert calm_steps_until_given_back(control) == 40
    calm_steps_until_given_back(control)  # the second worker: the queue is full again
    assert control.counts() == [2]
    for _ in range(10):  # a calm second with every worker back
        control.step(CALM)
    control.step(OVER)  # a new spell of pressure: the first wait is a cooldown again
    control.step(OVER)
    assert calm_steps_until_given_back(control) == 10
    control.yielding.stop()


async def test_the_last_worker_given_back_that_brings_pressure_back_doubles_the_wait() -> None:
    # The queue's full count is what presses the requests (two workers, the default floor of
    # one): giving the second worker back is the probe that fails each time, and its wait
    # must grow like any other probe's, not start afresh because the queue was full a moment.
    control = await controlled(
        YieldToRequests(target_lag=TARGET), FakeQueue("q", 2), cooldown=COOLDOWN
    )
    control.step(OVER)
    assert control.counts() == [1]
    assert failed_probe_waits(control, 4, given=2, cut=1) == [10, 20, 40, 80]
    control.yielding.stop()


async def test_a_signal_within_the_band_below_the_target_neither_cuts_nor_gives_back(
    eight: Controlled,
) -> None:
    eight.step(OVER)
    eight.step(OVER)
    assert eight.counts() == [2]
    for _ in range(30):  # 3 s: well past the cooldown
        eight.step(BAND)
    assert eight.counts() == [2]
    eight.step(CALM)
    assert eight.counts() == [3]


async def test_a_calm_controller_leaves_every_queue_its_workers(eight: Controlled) -> None:
    for _ in range(20):
        eight.step(BAND)
    assert eight.counts() == [8]
    assert eight.yielding.stats() is not None
    assert eight.yielding.stats().state == "calm"  # type: ignore[union-attr]


async def test_slow_requests_press_when_a_latency_target_is_set() -> None:
    config = YieldToRequests(target_lag=TARGET, target_latency=0.1)
    control = await controlled(config, FakeQueue("q", 4))
    control.step(CALM, 0.01, 0.01)
    assert control.counts() == [4]
    control.step(CALM, 0.3, 0.01)  # a mean of 155 ms: over 100 ms
    assert control.counts() == [2]
    stats = control.yielding.stats()
    assert stats is not None
    assert stats.latency == pytest.approx(0.155)
    assert stats.pressure == pytest.approx(1.55)
    control.yielding.stop()


async def test_the_loops_lag_does_not_press_while_no_request_comes(eight: Controlled) -> None:
    for _ in range(5):
        eight.yielding.lag(OVER)  # jobs slow each other down; no request is there to feel it
        eight.clock.advance(STEP)
    assert eight.counts() == [8]
    eight.step(OVER)
    assert eight.counts() == [4]


async def test_slow_requests_do_not_press_without_a_latency_target(eight: Controlled) -> None:
    for _ in range(5):
        eight.step(CALM, 10.0)
    assert eight.counts() == [8]


async def test_stats_show_the_state_the_pressure_and_each_queues_effective_workers(
    eight: Controlled,
) -> None:
    eight.step(OVER)
    stats = eight.yielding.stats()
    assert stats is not None
    assert (stats.state, stats.effective_workers) == ("yielding", {"default": 4})
    assert stats.lag == pytest.approx(OVER)
    assert stats.pressure == pytest.approx(5.0)
    assert (stats.target_lag, stats.target_latency, stats.floor) == (TARGET, None, 1)
    for _ in range(11):
        eight.step(CALM)
    stats = eight.yielding.stats()
    assert stats is not None
    assert (stats.state, stats.effective_workers) == ("recovering", {"default": 5})
    for _ in range(3):
        eight.step(CALM)
    assert eight.yielding.stats().state == "calm"  # type: ignore[union-attr]


async def test_yielding_and_calm_again_are_logged_once_each(
    eight: Controlled, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "backburner")
    for _ in range(5):
        eight.step(OVER)
    for _ in range(30):
        eight.step(CALM)
    messages = [r.getMessage() for r in caplog.records if r.name == "backburner"]
    assert len([m for m in messages if m.startswith("yielding to requests")]) == 1
    assert len([m for m in messages if m.startswith("requests are calm again")]) == 1


async def test_a_cut_made_at_once_shows_no_latency_of_an_earlier_interval(
    eight: Controlled, caplog: pytest.LogCaptureFixture
) -> None:
    # The stats and the log line put the lag and the latency side by side: both are this
    # interval's, not a lag of now beside the last decision's latency.
    caplog.set_level(logging.INFO, "backburner")
    eight.step(CALM, 0.003)  # an interval whose requests were answered in 3 ms
    eight.yielding.request_arrived()
    eight.yielding.lag(OVER)  # cut at once: no request of this interval answered yet
    assert eight.counts() == [4]
    stats = eight.yielding.stats()
    assert stats is not None
    assert (stats.lag, stats.latency) == (OVER, None)
    messages = [r.getMessage() for r in caplog.records if r.name == "backburner"]
    assert messages == ["yielding to requests: the loop ran 50.0 ms late; fewer jobs start"]


# The setting.


def test_yield_to_requests_true_takes_the_defaults_and_false_is_off() -> None:
    on = Backburner(yield_to_requests=True)
    assert on.yielding.config == YieldToRequests()
    assert Backburner(yield_to_requests=False).yielding.config is None
    assert Backburner().stats().yielding is None
    stats = on.stats().yielding
    assert stats is not None
    assert stats.state == "calm"


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("yes", TypeError),
        (1, TypeError),
        (YieldToRequests, TypeError),
    ],
)
def test_a_bad_yield_to_requests_setting_is_refused(given: object, error: type) -> None:
    with pytest.raises(error, match="yield_to_requests must be True, False or YieldToRequests"):
        Backburner(yield_to_requests=given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target_lag": 0}, ValueError, "target_lag must be a finite number of seconds"),
        ({"target_lag": "10ms"}, TypeError, "target_lag must be a number of seconds"),
        ({"target_latency": float("inf")}, ValueError, "target_latency must be a finite"),
        ({"floor": -1}, ValueError, "floor must be a whole number of workers"),
        ({"floor": 1.5}, TypeError, "floor must be a whole number of workers"),
        ({"floor": True}, TypeError, "floor must be a whole number of workers"),
    ],
)
def test_bad_yield_to_requests_values_are_refused_where_written(
    kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        YieldToRequests(**kwargs)  # type: ignore[arg-type]


# The queue honours its effective count.


class Holds:
    """Async jobs that each wait for their own release; ``started`` names those that began."""

    def __init__(self) -> None:
        self.releases: dict[str, asyncio.Event] = {}
        self.started: list[str] = []

    async def hold(self, name: str) -> str:
        self.started.append(name)
        await self.releases.setdefault(name, asyncio.Event()).wait()
        return name

    def release(self, name: str) -> None:
        self.releases.setdefault(name, asyncio.Event()).set()


async def test_a_lowered_count_lets_running_jobs_run_and_holds_waiting_ones() -> None:
    holds = Holds()
    async with Backburner(workers=4) as bg:
        queue = bg.queues()["default"]
        first = [bg.enqueue(holds.hold, f"a{i}") for i in range(4)]
        await wait_until(lambda: len(holds.started) == 4)
        queue.set_effective_workers(2)  # type: ignore[attr-defined]
        later = [bg.enqueue(holds.hold, f"b{i}") for i in range(2)]
        assert all(job.status is JobStatus.RUNNING for job in first)  # none cancelled
        assert [job.status for job in later] == [JobStatus.PENDING] * 2
        holds.release("a0")
        await first[0]
        holds.release("a1")
        await first[1]
        assert bg.stats().total.busy == 2  # two ended: their slots were not handed on
        assert [job.status for job in later] == [JobStatus.PENDING] * 2
        holds.release("a2")
        await first[2]
        await wait_until(lambda: later[0].status is JobStatus.RUNNING)
        assert later[1].status is JobStatus.PENDING  # two run: the count is two
        queue.set_effective_workers(4)  # type: ignore[attr-defined]
        assert [later[1].status] == [JobStatus.RUNNING]  # raised: a waiting job starts at once
        for name in ("a3", "b0", "b1"):
            holds.release(name)
        await bg.join()


async def test_a_job_enqueued_on_the_loop_waits_while_the_count_is_reached() -> None:
    gate = Gate()
    async with Backburner(workers=2) as bg:
        bg.queues()["default"].set_effective_workers(1)  # type: ignore[attr-defined]
        running = bg.enqueue(gate.hold)
        waiting = bg.enqueue(gate.hold)
        assert (running.status, waiting.status) == (JobStatus.RUNNING, JobStatus.PENDING)
        gate.opened.set()
        await bg.join()


async def test_sync_jobs_count_against_the_effective_workers() -> None:
    release = threading.Event()

    def blocks() -> None:
        release.wait(30)

    async with Backburner(workers=3) as bg:
        bg.queues()["default"].set_effective_workers(1)  # type: ignore[attr-defined]
        jobs = [bg.enqueue(blocks) for _ in range(3)]
        await wait_until(lambda: jobs[0].status is JobStatus.RUNNING)
        assert [job.status for job in jobs[1:]] == [JobStatus.PENDING] * 2
        release.set()
        await bg.join()
    assert all(job.status is JobStatus.SUCCEEDED for job in jobs)


async def test_a_job_its_concurrency_limit_lets_go_still_waits_for_the_effective_count() -> None:
    holds = Holds()

    @job(limits=[ConcurrencyLimit(1, key=lambda name, key: key)])
    async def keyed(name: str, key: str) -> str:
        return await holds.hold(name)

    async with Backburner(workers=3) as bg:
        queue = bg.queues()["default"]
        a0, b0 = bg.enqueue(keyed, "a0", "a"), bg.enqueue(keyed, "b0", "b")
        await wait_until(lambda: len(holds.started) == 2)
        queue.set_effective_workers(1)  # type: ignore[attr-defined]
        a1 = bg.enqueue(keyed, "a1", "a")  # held by its key's limit, not by a worker
        assert [a1.status] == [JobStatus.BLOCKED]
        holds.release("a0")
        await a0  # its key is free: a1 leaves its limit, and waits for a worker
        await wait_until(lambda: a1.status is not JobStatus.BLOCKED)
        assert [a1.status] == [JobStatus.PENDING]  # b0 runs, and the count is one
        holds.release("b0")
        await b0
        await wait_until(lambda: a1.status is JobStatus.RUNNING)
        holds.release("a1")
        assert await a1 == "a1"


async def test_the_executor_drives_only_its_local_queues_and_gives_them_back_at_shutdown() -> None:
    clock = ManualClock()
    config = YieldToRequests(target_lag=TARGET)
    bg = Backburner(
        queues={"mail": QueueConfig(workers=4)}, workers=2, clock=clock, yield_to_requests=config
    )
    async with bg:
        bg.yielding.request_arrived()
        bg.yielding.lag(OVER)
        clock.advance(STEP)
        stats = bg.stats().yielding
        assert stats is not None
        assert stats.effective_workers == {"default": 1, "mail": 2}
        assert stats.state == "yielding"
    gate = Gate()  # after a stop and a start, every worker is back
    async with bg:
        jobs = [bg.enqueue(gate.hold) for _ in range(2)]
        assert [job.status for job in jobs] == [JobStatus.RUNNING] * 2
        gate.opened.set()


async def wait_until(condition: object, bound: float = 30.0) -> None:
    """Let the loop run until ``condition()`` holds (a generous bound: it fails, not hangs)."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0)
