"""Yielding to requests: fewer jobs start while requests feel the process is busy.

Jobs share the web process with its requests: an async job that crunches for 5 ms between
awaits holds every request that arrives meanwhile, and a sync job holds the GIL. With
``yield_to_requests`` on, ``Yielding`` watches what requests experience and turns it into the
number of jobs each local queue may *start*:

* two signals: the event loop's lag (a heartbeat on the loop every ``beat`` seconds, and how
  late it runs: what any request waiting for the loop waits too), and the mean time requests
  took to their response's start (``BackburnerMiddleware`` reports each one). The lag counts
  only in an interval in which a request came or was answered: with no request to feel it,
  jobs slowing each other down is no reason to start fewer of them;
* every ``interval`` seconds (on the executor's clock) one decision, AIMD like TCP's: the
  pressure is the worse of the two signals as a multiple of its target; past 1, each queue's
  effective workers halve (never below ``floor``); under ``calm`` (a hysteresis band, so a
  signal hovering near its target does not make the count flap) and after ``cooldown``
  seconds without pressure, each queue gets one worker back per decision, up to ``workers``.
  A worker given back that brings the pressure back within ``cooldown`` doubles that wait
  before the next one (up to ``max_cooldown``), as TCP backs off its retransmissions: while
  the requests stay this pressed, each probe costs them a job's steps, so the probes grow
  rarer. Once every worker is back and a ``cooldown`` passed without its pressure, the wait
  is ``cooldown`` again.

A queue's effective count only gates what starts (``JobQueue.set_effective_workers``): a
running job is never cancelled, and its slot is not handed on while the queue is over its
count. The controller is a plain object driven by its signals and a clock, so tests feed it
fake lags and latencies and move a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._clock import Clock, TimerHandle
from ._stats import YieldStats

__all__ = ["Throttled", "YieldToRequests", "Yielding", "check_yield_setting"]

logger = logging.getLogger("backburner")

#: Below this the operating system's own scheduling and a garbage collection pass it.
MIN_TARGET = 0.001


@dataclass(frozen=True, slots=True)
class YieldToRequests:
    """How background jobs yield to requests: ``Backburner(yield_to_requests=...)``.

    ``yield_to_requests=True`` takes these defaults. ``target_lag``: seconds the event loop may
    run late (what a request waits before its code runs) before fewer jobs start.
    ``target_latency``: seconds a request may take to its response's start, on average over
    a tenth of a second, before fewer jobs start; None (the default) does not look at it: an
    app whose endpoints await a slow database would otherwise starve its jobs for no gain.
    ``floor``: each queue keeps at least this many workers (at most its ``workers``) however
    busy the requests are; 0 lets jobs stop starting altogether while the pressure lasts.
    """

    target_lag: float = 0.01
    target_latency: float | None = None
    floor: int = 1

    def __post_init__(self) -> None:
        _check_seconds("target_lag", self.target_lag)
        if self.target_latency is not None:
            _check_seconds("target_latency", self.target_latency)
        whole = isinstance(self.floor, int) and not isinstance(self.floor, bool)
        if not whole or self.floor < 0:
            raise (ValueError if whole else TypeError)(
                f"floor must be a whole number of workers, 0 or more (each queue keeps at "
                f"least this many), got {type(self.floor).__name__} {self.floor!r}"
            )


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < MIN_TARGET:
        raise ValueError(
            f"{name} must be a finite number of seconds, at least {MIN_TARGET}, got {value!r}"
        )


def check_yield_setting(value: object) -> YieldToRequests | None:
    """``yield_to_requests``: True (the defaults), False or None (off), or a ``YieldToRequests``."""
    if value is None or value is False:
        return None
    if value is True:
        return YieldToRequests()
    if isinstance(value, YieldToRequests):
        return value
    raise TypeError(
        f"yield_to_requests must be True, False or YieldToRequests(target_lag=..., floor=...), "
        f"got {type(value).__name__} {value!r}"
    )


@runtime_checkable
class Throttled(Protocol):
    """A queue whose jobs run in this process: the number it starts can be lowered."""

    name: str
    workers: int

    def set_effective_workers(self, count: int) -> None:
        """Start jobs only while fewer than ``count`` run."""
        ...


class Yielding:
    """The AIMD controller over each local queue's effective workers (see the module).

    With ``config`` None (``yield_to_requests`` off) it does nothing: ``start`` arms no timer,
    ``stats`` is None, and the middleware reports no request to it. ``interval``: seconds of
    the clock between decisions; ``beat``: seconds between heartbeats (None: none, the lag is
    only what ``lag()`` is told); ``cooldown``: seconds without pressure before a worker comes
    back, doubled after each one that brought the pressure back, up to ``max_cooldown``
    (8 times ``cooldown`` by default); ``calm``: the fraction of the target under which the
    signals count as calm.
    """

    def __init__(
        self,
        config: YieldToRequests | None,
        clock: Clock,
        *,
        interval: float = 0.1,
        beat: float | None = 0.01,
        cooldown: float = 1.0,
        max_cooldown: float | None = None,
        calm: float = 0.5,
    ) -> None:
        self.config = config
        self.clock = clock
        self.interval = interval
        self.beat = beat
        self.cooldown = cooldown
        self.max_cooldown = 8 * cooldown if max_cooldown is None else max_cooldown
        self.calm = calm
        self._queues: Callable[[], Iterable[object]] = tuple
        self._effective: dict[str, int] = {}
        # The signals since the last decision: the worst lag, requests come, and the answered
        # ones' time to their response's start (sum and count).
        self._lag = 0.0
        self._arrived = 0
        self._latency_sum = 0.0
        self._requests = 0
        # What the last decision saw and did.
        self._pressure = 0.0
        self._seen_lag = 0.0
        self._seen_latency: float | None = None
        self._state = "calm"
        self._last_over = -math.inf  # clock time of the last decision over target
        self._cut_early = False  # this interval's cut already made, by `lag`
        self._wait = cooldown  # seconds without pressure before a worker comes back (backoff)
        self._gave_back_at = -math.inf  # clock time a worker last came back
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat_handle: asyncio.TimerHandle | None = None
        self._beat_due = 0.0
        self._timer: TimerHandle | None = None

    # The signals.

    def lag(self, seconds: float) -> None:
        """The loop ran ``seconds`` late once: the worst since the last decision counts.

        Past the lag target while requests come, the cut is made at once, not at the
        interval's end: a job that starts meanwhile holds the loop for all its steps. One cut
        per interval: the decision that ends it makes no second one.
        """
        if seconds > self._lag:
            self._lag = seconds
            config = self.config
            if (
                config is not None
                and seconds > config.target_lag
                and not self._cut_early
                and (self._arrived or self._requests)
                and self._queues is not tuple  # (started)
            ):
                self._cut_early = True
                # What this interval saw so far, as a decision would say it: not the last
                # decision's latency beside this lag (the stats and the log line show both).
                latency = self._latency_sum / self._requests if self._requests else None
                pressure = seconds / config.target_lag
                if latency is not None and config.target_latency is not None:
                    pressure = max(pressure, latency / config.target_latency)
                self._pressure, self._seen_lag, self._seen_latency = pressure, seconds, latency
                self._step(config, self.clock.now(), over=True, give_back=False)

    def request_arrived(self) -> None:
        """A request came in (the middleware's report): the loop's lag matters now."""
        self._arrived += 1

    def request_answered(self, seconds: float) -> None:
        """A request took ``seconds`` to its response's start (the middleware's report)."""
        self._latency_sum += seconds
        self._requests += 1

    # The controller.

    def decide(self) -> None:
        """One AIMD step over every local queue, from the signals since the last one."""
        now = self.clock.now()
        config = self.config
        if config is None:
            return
        latency = self._latency_sum / self._requests if self._requests else None
        felt = self._arrived or self._requests  # no request: nobody felt the lag
        pressure = self._lag / config.target_lag if felt else 0.0
        if latency is not None and config.target_latency is not None:
            pressure = max(pressure, latency / config.target_latency)
        self._pressure, self._seen_lag, self._seen_latency = pressure, self._lag, latency
        self._lag, self._arrived, self._latency_sum, self._requests = 0.0, 0, 0.0, 0
        over = pressure > 1.0
        give_back = pressure < self.calm and now - self._last_over >= self._wait
        halve = not self._cut_early  # (else this interval's cut was made when its lag came)
        self._cut_early = False
        self._step(config, now, over, give_back, halve)

    def _step(
        self, config: YieldToRequests, now: float, over: bool, give_back: bool, halve: bool = True
    ) -> None:
        # Over: halve each queue's effective workers (down to the floor; `halve` False: the
        # interval's cut is made, hold); else give one back, or hold. Then the state.
        if over:
            self._last_over = now
            if now - self._gave_back_at <= self.cooldown:  # that worker brought it back
                self._wait = min(2 * self._wait, self.max_cooldown)
                self._gave_back_at = -math.inf  # (one doubling per worker given back)
        short = False  # a queue below its workers after this step
        for queue in self._queues():
            if not isinstance(queue, Throttled):
                continue  # a remote queue's jobs run elsewhere
            floor = min(config.floor, queue.workers)
            before = self._effective.get(queue.name, queue.workers)
            if over and halve:
                count = max(floor, before // 2)
            elif give_back:
                count = min(queue.workers, before + 1)
            else:
                count = max(floor, min(queue.workers, before))
            if count != before or queue.name not in self._effective:
                queue.set_effective_workers(count)
            if count > before:
                self._gave_back_at = now
            self._effective[queue.name] = count
            short = short or count < queue.workers
        if not short and now - self._gave_back_at > self.cooldown:
            # Every worker is back, and the last one given back brought no pressure back
            # within the cooldown: the next cut starts afresh. (Not as it is given back: it
            # is a probe like the others, and the likeliest to bring the pressure back.)
            self._wait = self.cooldown
        # Yielding from the first cut until the cooldown is over; then giving workers back.
        pressed = over or now - self._last_over < self._wait
        self._set_state("calm" if not short else "yielding" if pressed else "recovering")

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        if state == "yielding" and self._state == "calm":
            logger.info(
                "yielding to requests: the loop ran %.1f ms late%s; fewer jobs start",
                self._seen_lag * 1000,
                ""
                if self._seen_latency is None
                else f", requests took {self._seen_latency * 1000:.1f} ms to answer",
            )
        elif state == "calm":
            logger.info("requests are calm again: every worker is back")
        self._state = state

    def stats(self) -> YieldStats | None:
        """What the last decision saw and each queue's effective workers; None when off."""
        if self.config is None:
            return None
        return YieldStats(
            state=self._state,
            pressure=self._pressure,
            lag=self._seen_lag,
            latency=self._seen_latency,
            effective_workers={
                queue.name: self._effective.get(queue.name, queue.workers)
                for queue in self._queues()
                if isinstance(queue, Throttled)
            },
            target_lag=self.config.target_lag,
            target_latency=self.config.target_latency,
            floor=self.config.floor,
        )

    # Wiring: the executor starts and stops it with its queues.

    def start(
        self, loop: asyncio.AbstractEventLoop, queues: Callable[[], Iterable[object]]
    ) -> None:
        """Watch the loop and decide every ``interval`` from now on; every queue starts full."""
        self.stop()
        if self.config is None:
            return
        self._loop, self._queues = loop, queues
        self._effective.clear()
        self._lag, self._arrived, self._latency_sum, self._requests = 0.0, 0, 0.0, 0
        self._pressure, self._seen_lag, self._seen_latency = 0.0, 0.0, None
        self._state, self._last_over = "calm", -math.inf
        self._wait, self._gave_back_at, self._cut_early = self.cooldown, -math.inf, False
        if self.beat is not None:  # (None: the lag is only what `lag()` is told, in tests)
            self._beat()
        self._arm()

    def stop(self) -> None:
        """Stop watching and give every queue all its workers back (a drain needs them)."""
        if self._beat_handle is not None:
            self._beat_handle.cancel()
            self._beat_handle = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for queue in self._queues():
            if isinstance(queue, Throttled) and self._effective.get(queue.name, queue.workers) < (
                queue.workers
            ):
                queue.set_effective_workers(queue.workers)
        self._effective.clear()
        self._queues = tuple

    def _beat(self) -> None:
        # The heartbeat: how late this runs is how long anything ready on the loop waited.
        now = time.monotonic()
        if self._beat_handle is not None:
            self.lag(now - self._beat_due)
        assert self._loop is not None
        assert self.beat is not None
        self._beat_due = now + self.beat
        self._beat_handle = self._loop.call_later(self.beat, self._beat)

    def _arm(self) -> None:
        assert self._loop is not None
        self._timer = self.clock.call_at(self.clock.now() + self.interval, self._tick, self._loop)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.decide()
        finally:
            self._arm()
