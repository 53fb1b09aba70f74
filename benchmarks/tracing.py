"""The tracing benchmark: what OpenTelemetry costs per job, with the real SDK configured.

Run it as ``.venv/bin/python benchmarks/tracing.py`` (``make bench`` runs it after
``core.py``); ``--quick`` is a smoke run. The job is ``async def noop(): pass``; each run
enqueues ``--jobs`` (20,000) of them at once on 8 workers, then ``join()``, in a fresh event
loop; µs per job is the time from the first enqueue to the end of ``join()``, divided by the
jobs. The executors:

- ``off``: ``Backburner(tracing=False)``.
- ``no provider``: ``Backburner()`` in a process where no tracer or meter provider is set:
  the executor has no telemetry (``bg.telemetry is None``), so the same paths as ``off``.
- ``no-op SDK``: ``tracing=Telemetry(NoOpTracerProvider(), NoOpMeterProvider())``: the
  traced paths (admission's full sequence, the guarded run, the hooks) with spans and a
  histogram that cost next to nothing: backburner's own share of the cost.
- ``on``: ``Backburner(tracing=Telemetry(tracers, meters))`` with the SDK's
  ``TracerProvider`` (its default sampler, a span processor that drops each span: no
  exporter I/O) and the SDK's ``MeterProvider`` with an ``InMemoryMetricReader`` (the
  histogram aggregates each attempt). A PRODUCER and a CONSUMER span and one histogram
  record per job.

Beside them, ``SDK floor``: the SDK's part of ``on``, without backburner: the same two spans
per job (names, kinds, attributes, parents) and the same histogram record (attributes, and
the attempt's span current: an exemplar), enqueued then run as in ``on``, in a plain loop.
It is the part of ``on``'s extra cost that no change in backburner can remove:
``(off + SDK floor) / off`` is the best ``on / off`` could be.

Every repeat (``--repeats``, 5) measures each, rotating which goes first; a figure is the
median of the repeats with their range; the ratio ``on / off`` is the median of the
per-repeat ratios. The target (issue 16): ``on`` at most 2x ``off``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    SpanKind,
    set_span_in_context,
)

from backburner import Backburner
from backburner._durations import BOUNDS  # the histogram's buckets, as backburner makes it
from backburner.otel import Telemetry

MAX_RATIO = 2.0
WORKERS = 8
MODES = ("off", "no provider", "no-op SDK", "on")


async def noop() -> None:
    pass


class Drop(SpanProcessor):
    """A span processor that keeps nothing: the SDK's work without an exporter's I/O."""


_REQUESTS = TracerProvider()  # the request's span: the app's, recorded elsewhere


def request_span() -> Any:
    """The span a web request would have open while it enqueues (a separate provider's)."""
    return _REQUESTS.get_tracer("app").start_as_current_span("GET /")


def telemetry() -> tuple[Telemetry, TracerProvider, MeterProvider]:
    tracers = TracerProvider()
    tracers.add_span_processor(Drop())
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Telemetry(tracers, meters), tracers, meters


async def burst(mode: str, jobs: int) -> float:
    """µs per job: ``jobs`` no-op jobs enqueued at once, then ``join()``."""
    providers: tuple[TracerProvider, MeterProvider] | None = None
    settings: dict[str, Any] = {"workers": WORKERS, "max_pending": jobs}
    if mode == "off":
        settings["tracing"] = False
    elif mode == "no-op SDK":  # the API's no-op providers: backburner's side of the cost
        settings["tracing"] = Telemetry(NoOpTracerProvider(), NoOpMeterProvider())
    elif mode == "on":
        config, tracers, meters = telemetry()
        providers = (tracers, meters)
        settings["tracing"] = config
    try:
        async with Backburner(**settings) as bg:
            assert (bg.telemetry is None) is (mode in ("off", "no provider")), mode
            gc.collect()
            began = time.perf_counter()
            with request_span():  # as in a web app: jobs enqueued by a request
                for _ in range(jobs):
                    bg.enqueue(noop)
            await bg.join()
            elapsed = time.perf_counter() - began
    finally:
        if providers is not None:
            providers[0].shutdown()
            providers[1].shutdown()
    return elapsed / jobs * 1e6


def sdk_floor(jobs: int) -> float:
    """µs per job of the SDK alone: what ``on`` asks of it per job, without backburner.

    The same calls on the same providers as backburner's traced path in ``on``: under the
    request's span, a PRODUCER span per job with the same name, kind and attributes (its
    context kept, as the job keeps it), all enqueued before any runs; then per job a
    CONSUMER span whose parent is that context, with the same attributes, ended, and its
    duration recorded in the same histogram with the same attributes, in a context where
    that span is current (as the job's is: the SDK offers it as an exemplar).
    """
    _, tracers, meters = telemetry()
    tracer = tracers.get_tracer("backburner")
    histogram = meters.get_meter("backburner").create_histogram(
        "backburner.job.duration", "s", explicit_bucket_boundaries_advisory=list(BOUNDS)
    )
    ids = [f"floor-{n}" for n in range(jobs)]
    labels = {"messaging.destination.name": "default", "backburner.outcome": "succeeded"}
    gc.collect()
    with request_span() as request:
        began = time.perf_counter()
        within = set_span_in_context(request)
        enqueued = []
        for job_id in ids:
            producer = tracer.start_span(
                "publish default",
                within,
                SpanKind.PRODUCER,
                {
                    "messaging.system": "backburner",
                    "messaging.destination.name": "default",
                    "messaging.message.id": job_id,
                    "messaging.operation": "publish",
                    "backburner.job.name": "noop",
                },
            )
            producer.end()
            enqueued.append(producer.get_span_context())
        for job_id, context in zip(ids, enqueued, strict=True):
            consumer = tracer.start_span(
                "process default",
                set_span_in_context(NonRecordingSpan(context)),
                SpanKind.CONSUMER,
                {
                    "messaging.system": "backburner",
                    "messaging.destination.name": "default",
                    "messaging.message.id": job_id,
                    "messaging.operation": "process",
                    "backburner.job.name": "noop",
                    "backburner.attempt": 1,
                },
            )
            current = set_span_in_context(consumer)
            consumer.end()
            histogram.record(1e-5, labels, current)  # (the job's clock: read anyway, in `off` too)
        elapsed = time.perf_counter() - began
    tracers.shutdown()
    meters.shutdown()
    return elapsed / jobs * 1e6


def measure(mode: str, jobs: int) -> float:
    if mode == "SDK floor":
        return sdk_floor(jobs)
    return asyncio.run(burst(mode, jobs))


def spread(values: Sequence[float], unit: str = "") -> str:
    low, high, mid = min(values), max(values), statistics.median(values)
    return f"{mid:.2f}{unit} ({low:.2f}-{high:.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 jobs, 1 repeat")
    options = parser.parse_args(argv)
    if options.quick:
        options.jobs, options.repeats = 1000, 1
    rows = (*MODES, "SDK floor")
    for mode in rows:  # warm-up: imports, caches, the first loop
        measure(mode, min(options.jobs, 1000))
    samples: dict[str, list[float]] = {mode: [] for mode in rows}
    for repeat in range(options.repeats):
        order = rows[repeat % len(rows) :] + rows[: repeat % len(rows)]
        for mode in order:
            samples[mode].append(measure(mode, options.jobs))
        print(f"repeat {repeat + 1}/{options.repeats}", file=sys.stderr, flush=True)
    print("backburner tracing benchmark")
    print(
        f"  {options.jobs:,} no-op jobs per run, {WORKERS} workers, asyncio, "
        f"{options.repeats} repeat(s): medians (range)"
    )
    for mode in rows:
        print(f"  {mode:<12} {spread(samples[mode], ' µs/job')}")
    ratios = [on / off for on, off in zip(samples["on"], samples["off"], strict=True)]
    plain = [d / off for d, off in zip(samples["no provider"], samples["off"], strict=True)]
    extra = [on - off for on, off in zip(samples["on"], samples["off"], strict=True)]
    floor_share = [f / e for f, e in zip(samples["SDK floor"], extra, strict=True) if e > 0]
    print(f"  no provider / off: {spread(plain, 'x')} (the same code paths: ~1x is noise)")
    own = [n / off for n, off in zip(samples["no-op SDK"], samples["off"], strict=True)]
    print(f"  no-op SDK / off: {spread(own, 'x')} (backburner's traced paths alone)")
    print(
        f"  on - off: {spread(extra, ' µs/job')}; the SDK floor is {spread(floor_share, 'x')} of it"
    )
    best = [(off + f) / off for f, off in zip(samples["SDK floor"], samples["off"], strict=True)]
    print(f"  (off + SDK floor) / off: {spread(best, 'x')} (the best on / off can be)")
    met = statistics.median(ratios) <= MAX_RATIO
    print(f"  {'PASS' if met else 'FAIL'}  on / off: {spread(ratios, 'x')}; target ≤ {MAX_RATIO}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
