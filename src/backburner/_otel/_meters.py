"""The executor's metrics through an OpenTelemetry meter, mirroring the dashboard's Prometheus
families, and the attempts' durations as a histogram (kept here for Prometheus too).

The counters and gauges are observable instruments: a reader's collection reads
``stats()``, so they cost the jobs nothing. Only the duration histogram is recorded per
attempt, by the traced hooks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

if TYPE_CHECKING:
    from ._spans import Observed

__all__ = ["BOUNDS", "Durations", "JobMeters"]

#: The histogram's bucket bounds, in seconds: from a fast job's millisecond to ten minutes.
BOUNDS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
)

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


class Durations:
    """Attempt durations per queue in fixed buckets (``BOUNDS``): a Prometheus histogram."""

    __slots__ = ("queues",)

    def __init__(self) -> None:
        #: queue -> [count per bucket (the last: past every bound), sum of seconds, count].
        self.queues: dict[str, list[Any]] = {}

    def record(self, queue: str, seconds: float) -> None:
        """One attempt of ``queue`` took ``seconds``. Loop thread."""
        entry = self.queues.get(queue)
        if entry is None:
            entry = self.queues[queue] = [[0] * (len(BOUNDS) + 1), 0.0, 0]
        entry[0][bisect.bisect_left(BOUNDS, seconds)] += 1
        entry[1] += seconds
        entry[2] += 1

    def snapshot(self) -> dict[str, tuple[list[int], float, int]]:
        """Per queue: the cumulative count at each bound then +Inf, the sum and the count."""
        result = {}
        for queue, (buckets, total, count) in list(self.queues.items()):
            cumulative, running = [], 0
            for value in list(buckets):
                running += value
                cumulative.append(running)
            result[queue] = (cumulative, total, count)
        return result


class JobMeters:
    """The instruments of one executor, on the given meter provider (or the global one)."""

    def __init__(self, meter_provider: Any, observed: Observed, version: str) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("backburner", version)
        self.observed = observed
        self.durations = Durations()
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

    def record(self, queue: str, seconds: float, outcome: str) -> None:
        """One attempt ended: into the histogram (by queue and outcome) and the Prometheus one."""
        self.histogram.record(
            seconds, {"messaging.destination.name": queue, "backburner.outcome": outcome}
        )
        self.durations.record(queue, seconds)

    def _queue_field(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for queue in self.observed.stats().queues.values():
                yield Observation(int(getattr(queue, field)), _queue(queue.name))

        return observe

    def _started(self, options: CallbackOptions) -> Iterator[Observation]:
        for name, queue in list(self.observed.queues().items()):
            yield Observation(queue.wait_totals()[0], _queue(name))

    def _waited(self, options: CallbackOptions) -> Iterator[Observation]:
        for name, queue in list(self.observed.queues().items()):
            yield Observation(max(0.0, queue.wait_totals()[1]), _queue(name))

    def _kept(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(len(self.observed.failures()))

    def _periodic(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for periodic in self.observed.stats().periodic:
                yield Observation(
                    getattr(periodic, field), {"backburner.periodic.name": periodic.name}
                )

        return observe


def _queue(name: str) -> dict[str, str]:
    return {"messaging.destination.name": name}
