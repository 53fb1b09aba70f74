"""Periodic jobs: every N seconds, or at the times of a cron expression, in an explicit time zone.

A periodic job is declared with the executor and starts with it::

    Backburner(periodic=[
        Periodic(refresh_cache, every=300),
        Periodic(send_digest, cron="0 9 * * mon-fri", tz="Europe/Paris", args=("daily",)),
    ])

Each tick enqueues the job on its queue like any other job. A tick that finds the previous run
still pending or running is skipped and counted (``overlap=True`` allows overlap). Ticks are
computed from the schedule, strictly after the last one fired, so no tick fires twice; when the
process was busy or asleep past several ticks, it fires once, late, and goes on from now.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, NamedTuple, Protocol

from ._callables import plan_call
from ._checks import check_timeout
from ._errors import NotRunning, QueueFull
from ._job import Job, describe_callable
from ._options import JobOptions, options_of
from ._scheduler import Scheduler, Timer
from ._stats import PeriodicStats

__all__ = ["Claim", "Periodic", "PeriodicRunner", "PeriodicStats", "TickGate"]

logger = logging.getLogger("backburner")


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job to run on a schedule: give ``every`` (seconds) or ``cron`` (an expression).

    ``cron`` needs the ``cron`` extra (``pip install 'backburner[cron]'``, which brings the
    ``cronsim`` parser) and reads times in ``tz`` (a ``tzinfo`` or an IANA name; UTC if not
    given). ``name`` defaults to the function's name and must be unique per executor.
    """

    fn: Callable[..., Any]
    every: float | None = None
    cron: str | None = None
    tz: tzinfo | str = timezone.utc
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    overlap: bool = False
    #: Options for this job's runs (queue, retries, timeout); else those of ``@job``, if any.
    options: JobOptions | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(
                "a Periodic job needs exactly one schedule: every=<seconds> or cron='<expr>'"
            )
        if self.every is not None and check_timeout("every", self.every) <= 0:
            raise ValueError("every must be more than 0 seconds")
        plan_call(self.fn).check(self.fn, self.args, dict(self.kwargs))
        if isinstance(self.tz, str):
            object.__setattr__(self, "tz", _zone(self.tz))
        elif not isinstance(self.tz, tzinfo):
            raise TypeError(f"tz must be a tzinfo or an IANA zone name, got {self.tz!r}")
        if self.cron is not None:
            self.next_after(0.0)  # parse now: a bad expression fails where it was written

    @property
    def label(self) -> str:
        """The name shown in stats and logs."""
        return self.name or describe_callable(self.fn)

    @property
    def schedule(self) -> str:
        """The schedule, as written: ``every 300s`` or ``cron '0 9 * * *' (Europe/Paris)``."""
        if self.every is not None:
            return f"every {self.every:g}s"
        return f"cron {self.cron!r} ({self.tz})"

    def next_after(self, when: float) -> float:
        """The first tick strictly after clock time ``when``."""
        if self.every is not None:
            # Ticks on a grid from the epoch, so a restart keeps the same ticks.
            return (math.floor(when / self.every) + 1) * self.every
        assert self.cron is not None
        assert isinstance(self.tz, tzinfo)
        try:
            from cronsim import CronSim, CronSimError
        except ImportError:  # pragma: no cover - the extra is installed in development
            raise ImportError(
                "cron schedules need the cron extra: pip install 'backburner[cron]'"
            ) from None
        start = datetime.fromtimestamp(when, self.tz)
        try:
            return next(CronSim(self.cron, start)).timestamp()
        except CronSimError as exc:
            raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from None


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris'"
        ) from None


class Claim(NamedTuple):
    """A gate's answer for one tick: does this process fire it, and who fired the latest."""

    won: bool
    #: The pid of the process that fired the latest tick, if the gate knows it.
    fired_by: int | None


class TickGate(Protocol):
    """Decides who fires a tick when processes share a journal or a coordination directory,
    and which tick a restart missed."""

    def claim(self, name: str, tick: float) -> Claim:
        """Whether this process is the one to fire periodic job ``name``'s tick at ``tick``."""
        ...

    def missed(self, spec: Periodic, now: float) -> float | None:
        """The latest tick up to ``now`` that no process fired (while all were down), or None."""
        ...


class PeriodicRunner:
    """Fires one ``Periodic`` job's ticks through the scheduler, without overlap by default."""

    def __init__(self, spec: Periodic, queue: str, submit: Callable[[Periodic], Job[Any]]) -> None:
        self.spec = spec
        self.queue = queue
        self._submit = submit
        self._scheduler: Scheduler | None = None
        self._timer: Timer | None = None
        self.next_run: float | None = None
        self.last_run: float | None = None
        self.last_job: Job[Any] | None = None
        self.runs = 0
        self.skipped = 0
        #: The pid of the process that fired the latest tick (or run), as far as this one knows.
        self.fired_by: int | None = None
        self._gate: TickGate | None = None

    def start(self, scheduler: Scheduler, gate: TickGate | None = None) -> None:
        """Schedule the first tick after now; with a ``gate``, first fire a tick all missed."""
        self._scheduler = scheduler
        self._gate = gate
        now = scheduler.clock.now()
        missed = None if gate is None else gate.missed(self.spec, now)
        self._schedule_after(now)
        if missed is not None:
            logger.info(
                "periodic job %s missed its tick at %s while no process ran: firing it now",
                self.spec.label,
                datetime.fromtimestamp(missed, timezone.utc).isoformat(),
            )
            self._fire(missed)

    def stop(self) -> None:
        """Take back the next tick."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self.next_run = None

    def trigger(self) -> Job[Any] | None:
        """Run now, outside the schedule (unless a run is still going and overlap is off)."""
        return self._run(reason="triggered")

    def _schedule_after(self, when: float) -> None:
        assert self._scheduler is not None
        self.next_run = self.spec.next_after(when)
        self._timer = self._scheduler.call_at(self.next_run, self._tick, None)

    def _tick(self, _: object) -> None:
        assert self._scheduler is not None
        # The next tick is strictly after now: a tick fires at most once, and a late process
        # fires once for all the ticks it slept through.
        tick = self.next_run
        self._schedule_after(self._scheduler.clock.now())
        assert tick is not None
        self._fire(tick)

    def _fire(self, tick: float) -> None:
        if self._gate is not None:
            claim = self._gate.claim(self.spec.label, tick)
            if not claim.won:
                self.fired_by = claim.fired_by if claim.fired_by is not None else self.fired_by
                logger.debug("periodic job %s: another process fired this tick", self.spec.label)
                return
        self._run(reason="tick")

    def _run(self, reason: str) -> Job[Any] | None:
        previous = self.last_job
        if not self.spec.overlap and previous is not None and not previous.done():
            self.skipped += 1
            logger.info(
                "periodic job %s skipped its %s: run %s is still %s",
                self.spec.label,
                reason,
                previous.id,
                previous.status.value,
            )
            return None
        try:
            job = self._submit(self.spec)
        except (QueueFull, NotRunning) as exc:
            self.skipped += 1
            logger.warning("periodic job %s skipped its %s: %s", self.spec.label, reason, exc)
            return None
        assert self._scheduler is not None
        self.last_job = job
        self.last_run = self._scheduler.clock.now()
        self.runs += 1
        self.fired_by = os.getpid()
        return job

    def stats(self) -> PeriodicStats:
        """This job's schedule and record."""
        return PeriodicStats(
            name=self.spec.label,
            schedule=self.spec.schedule,
            queue=self.queue,
            next_run=self.next_run,
            last_run=self.last_run,
            runs=self.runs,
            skipped=self.skipped,
            fired_by=self.fired_by,
        )


#: How the executor enqueues a run: ``submit(fn, args, kwargs, option changes, run_at)``.
Submit = Callable[
    [Callable[..., Any], tuple[Any, ...], dict[str, Any], "dict[str, Any] | None", None],
    Job[Any],
]


class PeriodicJobs:
    """The periodic jobs of one executor, by name: registered, started, stopped, triggered."""

    def __init__(self, submit: Submit) -> None:
        """Each run goes through ``submit`` (the executor's admission), with its options."""
        self._enqueue = submit
        self._runners: dict[str, PeriodicRunner] = {}
        self._scheduler: Scheduler | None = None
        #: With a journal: one tick, one process (set while the journal is open).
        self.gate: TickGate | None = None

    def register(self, spec: Periodic, queues: Collection[str]) -> None:
        """Check ``spec`` (a ``Periodic``, for one of ``queues``), then ``add`` it."""
        if not isinstance(spec, Periodic):
            raise TypeError(f"periodic jobs are Periodic(fn, every=... or cron=...), got {spec!r}")
        options = spec.options or options_of(spec.fn)
        if options.queue not in queues:
            raise ValueError(
                f"periodic job {spec.label!r} is for queue {options.queue!r}, which this "
                f"executor does not have ({sorted(queues)})"
            )
        self.add(spec, options.queue)

    def add(self, spec: Periodic, queue: str) -> None:
        """Register ``spec`` for ``queue``; it starts with the others (at once, if running)."""
        if spec.label in self._runners:
            raise ValueError(
                f"a periodic job named {spec.label!r} is already registered: give name=..."
            )
        runner = PeriodicRunner(spec, queue, self._submit)
        self._runners[spec.label] = runner
        if self._scheduler is not None:
            runner.start(self._scheduler, self.gate)

    def _submit(self, spec: Periodic) -> Job[Any]:
        changes = None
        if spec.options is not None:
            fields = spec.options.__dataclass_fields__
            changes = {name: getattr(spec.options, name) for name in fields}
        return self._enqueue(spec.fn, spec.args, dict(spec.kwargs), changes, None)

    def start(self, scheduler: Scheduler) -> None:
        """Schedule every job's first tick (a journal's gate first fires a tick all missed)."""
        self._scheduler = scheduler
        for runner in self._runners.values():
            runner.start(scheduler, self.gate)

    def stop(self) -> None:
        """Take back every job's next tick."""
        self._scheduler = None
        for runner in self._runners.values():
            runner.stop()

    def trigger(self, name: str) -> Job[Any] | None:
        """Run ``name`` now; None if its last run is still going (and overlap is off)."""
        try:
            runner = self._runners[name]
        except KeyError:
            raise ValueError(
                f"no periodic job named {name!r}; there are {sorted(self._runners)}"
            ) from None
        return runner.trigger()

    def specs(self) -> list[tuple[Periodic, str]]:
        """Every registered job and its queue."""
        return [(runner.spec, runner.queue) for runner in self._runners.values()]

    def stats(self) -> tuple[PeriodicStats, ...]:
        """Each job's schedule and record."""
        return tuple(runner.stats() for runner in self._runners.values())

    def describe(self) -> str:
        """For the startup log line: ``; periodic name schedule`` for each."""
        return "".join(
            f"; periodic {r.spec.label} {r.spec.schedule}" for r in self._runners.values()
        )
