"""The executor's metrics through an OpenTelemetry meter, mirroring the dashboard's Prometheus
families: the queues' counters and gauges, the limits' and yielding's figures, and the
attempts' durations as a histogram.

The counters and gauges are observable instruments: a reader's collection reads
``stats()``, so they cost the jobs nothing. Only the duration histogram is recorded per
attempt, by the traced hooks (with the attempt's outcome; the Prometheus histogram is the
queues' own, ``_durations.py``, counted whether tracing is on or not). A meter provider
gets one set of instruments, whichever executors use it (an SDK refuses a second
instrument of a name): they observe every running executor of the process that uses that
provider (a test suite makes many, one at a time).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._durations import BOUNDS
from .._job import Job
from .._ports import Queue
from .._stats import ExecutorStats

__all__ = ["JobMeters", "Observed", "meters_for"]

# (instrument, kind, QueueStats field, unit, description): the Prometheus families, by queue.
_QUEUE_INSTRUMENTS = (
    (
        "backburner.jobs.processed",
        "counter",
        "processed",
        "{job}",
        "Job attempts that ran to an end.",
    ),
    ("backburner.jobs.failed", "counter", "failed", "{job}", "Job attempts that raised."),
    (
        "backburner.jobs.dead",
        "counter",
        "dead",
        "{job}",
        "Jobs that failed on every attempt allowed.",
    ),
    (
        "backburner.jobs.cancelled",
        "counter",
        "cancelled",
        "{job}",
        "Jobs cancelled before or while running.",
    ),
    ("backburner.workers", "gauge", "workers", "{worker}", "Worker slots of the queue."),
    ("backburner.workers.busy", "gauge", "busy", "{worker}", "Worker slots running a job now."),
    ("backburner.jobs.pending", "gauge", "pending", "{job}", "Jobs waiting for a worker."),
    (
        "backburner.jobs.scheduled",
        "gauge",
        "scheduled",
        "{job}",
        "Jobs waiting for their time or for a retry.",
    ),
    ("backburner.queue.paused", "gauge", "paused", "1", "1 while the queue is paused, else 0."),
)


class Observed(Protocol):
    """What the metrics read when a reader collects them: the executor's public surface."""

    @property
    def running(self) -> bool:
        """True while it runs: only running executors are observed."""
        ...

    def stats(self) -> ExecutorStats:
        """Counters per queue and the periodic jobs' records."""
        ...

    def queues(self) -> Mapping[str, Queue]:
        """The open queues by name."""
        ...

    def failures(self) -> list[Job[Any]]:
        """The dead list."""
        ...


# A provider's instruments live as long as it does (a test suite's providers come and go).
_by_provider: weakref.WeakKeyDictionary[Any, JobMeters] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def meters_for(meter_provider: Any, observed: Observed, version: str) -> JobMeters:
    """The instruments on ``meter_provider`` (None: the global one), now observing ``observed``."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        meters = _by_provider.get(provider)
        if meters is None:
            meters = _by_provider[provider] = JobMeters(provider, version)
    meters.observed.add(observed)
    return meters


class JobMeters:
    """The instruments on one meter provider, observing the executors that use it."""

    def __init__(self, provider: Any, version: str) -> None:
        meter = provider.get_meter("backburner", version)
        #: The executors read at each collection (running ones only); weakly held.
        self.observed: weakref.WeakSet[Observed] = weakref.WeakSet()
        self.histogram = meter.create_histogram(
            "backburner.job.duration",
            unit="s",
            description="How long each job attempt ran, from taking a worker to its end.",
            explicit_bucket_boundaries_advisory=list(BOUNDS),
        )
        for name, kind, field, unit, description in _QUEUE_INSTRUMENTS:
            make = (
                meter.create_observable_counter
                if kind == "counter"
                else meter.create_observable_gauge
            )
            make(name, [self._queue_field(field)], unit, description)
        meter.create_observable_counter(
            "backburner.jobs.started",
            [self._started],
            "{job}",
            "Jobs (attempts) that a worker started.",
        )
        meter.create_observable_counter(
            "backburner.job.wait",
            [self._waited],
            "s",
            "Seconds the started jobs waited for a worker, in all.",
        )
        meter.create_observable_gauge(
            "backburner.failures.kept",
            [self._kept],
            "{job}",
            "Failed and dead jobs kept for inspection.",
        )
        meter.create_observable_counter(
            "backburner.periodic.runs",
            [self._periodic("runs")],
            "{run}",
            "Runs of each periodic job.",
        )
        meter.create_observable_counter(
            "backburner.periodic.skipped", [self._periodic("skipped")], "{run}",
            "Ticks of each periodic job skipped (previous run still going, or queue full).",
        )  # fmt: skip
        meter.create_observable_gauge(
            "backburner.limit.running", [self._limit("running")], "{job}",
            "Jobs a ConcurrencyLimit counts now, or a RateLimit's starts in its current window.",
        )  # fmt: skip
        meter.create_observable_gauge(
            "backburner.limit.held", [self._limit("held")], "{job}",
            "Jobs a limit holds now (blocked or throttled).",
        )  # fmt: skip
        meter.create_observable_gauge(
            "backburner.workers.effective", [self._effective], "{worker}",
            "Worker slots of the queue that may run jobs now (yielding to requests lowers it).",
        )  # fmt: skip
        meter.create_observable_gauge(
            "backburner.yield.pressure", [self._pressure], "1",
            "Yielding's last signal as a multiple of its target: past 1, fewer jobs start.",
        )  # fmt: skip

    def _running(self) -> list[Observed]:
        return [executor for executor in list(self.observed) if executor.running]

    def _queue_field(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for executor in self._running():
                for queue in executor.stats().queues.values():
                    yield Observation(int(getattr(queue, field)), _queue(queue.name))

        return observe

    def _started(self, options: CallbackOptions) -> Iterator[Observation]:
        for executor in self._running():
            for name, queue in list(executor.queues().items()):
                yield Observation(queue.wait_totals()[0], _queue(name))

    def _waited(self, options: CallbackOptions) -> Iterator[Observation]:
        for executor in self._running():
            for name, queue in list(executor.queues().items()):
                yield Observation(max(0.0, queue.wait_totals()[1]), _queue(name))

    def _kept(self, options: CallbackOptions) -> Iterator[Observation]:
        for executor in self._running():
            yield Observation(len(executor.failures()))

    def _periodic(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for executor in self._running():
                for periodic in executor.stats().periodic:
                    name = {"backburner.periodic.name": periodic.name}
                    yield Observation(getattr(periodic, field), name)

        return observe

    def _limit(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for executor in self._running():
                for limit in executor.stats().limits:
                    labels = {
                        "backburner.limit.name": limit.name,
                        "backburner.limit.kind": limit.kind,
                    }
                    yield Observation(getattr(limit, field), labels)

        return observe

    def _effective(self, options: CallbackOptions) -> Iterator[Observation]:
        for executor in self._running():
            yielding = executor.stats().yielding
            if yielding is not None:
                for name, count in yielding.effective_workers.items():
                    yield Observation(count, _queue(name))

    def _pressure(self, options: CallbackOptions) -> Iterator[Observation]:
        for executor in self._running():
            yielding = executor.stats().yielding
            if yielding is not None:
                yield Observation(float(yielding.pressure))


def _queue(name: str) -> dict[str, str]:
    return {"messaging.destination.name": name}
