"""OpenTelemetry: the spans, links and metrics of jobs, read from the real SDK's in-memory
exporter and reader; the journal's and taskiq's copies of the trace; no cost when it is off."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from backburner import (
    Backburner,
    ConcurrencyLimit,
    JobStatus,
    JobTimeout,
    Periodic,
    QueueConfig,
    YieldToRequests,
    job,
)
from backburner._durations import BOUNDS, cumulative
from backburner._journal._file import _MIGRATIONS
from backburner.dashboard._metrics import render_metrics
from backburner.otel import Telemetry
from backburner.prometheus import BackburnerCollector
from backburner.testing import ManualClock

from . import journal_jobs, test_metrics
from .jobs import Gate, fail, noop
from .processes import run_without_opentelemetry

pytestmark = pytest.mark.anyio


@dataclass
class Otel:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer: trace.Tracer
    telemetry: Telemetry

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.spans.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.finished(name)
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def metric(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracers.get_tracer("tests"), Telemetry(tracers, meters))
    tracers.shutdown()
    meters.shutdown()


def _attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes[key]


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _linked(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


async def test_enqueue_is_a_producer_span_under_the_current_one_and_its_run_a_consumer_under_it(
    otel: Otel,
) -> None:
    async with Backburner(tracing=otel.telemetry) as bg:
        with otel.tracer.start_as_current_span("request") as request:
            handle = bg.enqueue(noop, 1)
        await handle
    publish, process = otel.one("publish default"), otel.one("process default")
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert _parent_id(publish) == request.get_span_context().span_id
    assert _parent_id(process) == publish.context.span_id
    assert process.context.trace_id == request.get_span_context().trace_id
    assert process.links == ()
    for span, operation in ((publish, "publish"), (process, "process")):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "backburner"
        assert span.attributes["messaging.destination.name"] == "default"
        assert span.attributes["messaging.message.id"] == handle.id
        assert span.attributes["messaging.operation"] == operation
    assert process.attributes is not None
    assert process.attributes["backburner.attempt"] == 1
    assert "backburner.outcome" not in process.attributes  # said only when it did not succeed
    assert process.status.status_code is StatusCode.UNSET


async def test_a_jobs_own_spans_are_children_of_its_attempt_in_async_code_and_in_its_thread(
    otel: Otel,
) -> None:
    async def opens_a_span() -> None:
        with otel.tracer.start_as_current_span("inside async"):
            pass

    def opens_a_span_in_thread() -> None:
        with otel.tracer.start_as_current_span("inside thread"):
            pass

    async with Backburner(tracing=otel.telemetry) as bg:
        await bg.enqueue(opens_a_span)
        await bg.enqueue(opens_a_span_in_thread)
    attempts = {_attr(s, "backburner.job.name"): s for s in otel.finished("process default")}
    inside_async, inside_thread = otel.one("inside async"), otel.one("inside thread")
    assert _parent_id(inside_async) == attempts[opens_a_span.__qualname__].context.span_id
    assert (
        _parent_id(inside_thread) == attempts[opens_a_span_in_thread.__qualname__].context.span_id
    )


async def test_a_failed_attempt_records_its_error_on_its_span(otel: Otel) -> None:
    async with Backburner(tracing=otel.telemetry) as bg:
        handle = bg.enqueue(fail, "broken")
        with pytest.raises(ValueError, match="broken"):
            await handle
    process = otel.one("process default")
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "ValueError: broken"
    assert process.attributes is not None
    assert process.attributes["error.type"] == "ValueError"
    assert process.attributes["backburner.outcome"] == "failed"
    (event,) = process.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"


class _RefuseFirstAttempt(SpanProcessor):
    """A span processor that raises as the first attempt's span starts (a broken exporter's
    hook, say): what tracing's own code may do at the start of an attempt."""

    def __init__(self) -> None:
        self.refused = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.kind is SpanKind.CONSUMER and not self.refused:
            self.refused += 1
            raise RuntimeError("the exporter is broken")


async def test_an_attempt_whose_tracing_raises_fails_and_gives_its_worker_back(
    otel: Otel,
) -> None:
    tracers = TracerProvider()
    tracers.add_span_processor(_RefuseFirstAttempt())
    telemetry = Telemetry(tracers, MeterProvider())
    with anyio.fail_after(30):  # (the worker's slot was lost and join() hung)
        async with Backburner(workers=1, tracing=telemetry) as bg:
            first, second = bg.enqueue(noop), bg.enqueue(noop)
            with pytest.raises(RuntimeError, match="the exporter is broken"):
                await first
            await second
            await bg.join()
            assert bg.stats().queues["default"].busy == 0
    tracers.shutdown()


async def test_a_timeout_is_recorded_on_the_attempts_span(otel: Otel) -> None:
    clock = ManualClock()
    gate = Gate()
    async with Backburner(tracing=otel.telemetry, clock=clock) as bg:
        handle = bg.options(timeout=5).enqueue(gate.hold)
        await gate.started.wait()
        clock.advance(5)
        with pytest.raises(JobTimeout):
            await handle
    process = otel.one("process default")
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes is not None
    assert process.attributes["error.type"] == "JobTimeout"
    assert [event.name for event in process.events] == ["exception"]


async def test_a_retry_starts_its_own_trace_linked_to_the_enqueue_span(otel: Otel) -> None:
    attempts = []

    async def fails_once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first attempt")
        return "second"

    async with Backburner(tracing=otel.telemetry) as bg:
        with otel.tracer.start_as_current_span("request"):
            handle = bg.options(retries=1, backoff=0).enqueue(fails_once)
        assert await handle == "second"
    publish = otel.one("publish default")
    first, second = sorted(
        otel.finished("process default"),
        key=lambda s: _attr(s, "backburner.attempt"),
    )
    assert _parent_id(first) == publish.context.span_id
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes is not None
    assert first.attributes["backburner.outcome"] == "retrying"
    assert second.parent is None
    assert second.context.trace_id != publish.context.trace_id
    assert _linked(second) == [publish.context.span_id]
    assert second.attributes is not None
    assert second.attributes["backburner.attempt"] == 2


async def test_a_delayed_job_starts_its_own_trace_linked_to_the_enqueue_span(otel: Otel) -> None:
    clock = ManualClock()
    async with Backburner(tracing=otel.telemetry, clock=clock) as bg:
        with otel.tracer.start_as_current_span("request"):
            handle = bg.enqueue_in(60, noop)
        clock.advance(60)
        await handle
    publish, process = otel.one("publish default"), otel.one("process default")
    assert publish.parent is not None  # enqueued inside the request's trace
    assert process.parent is None
    assert process.context.trace_id != publish.context.trace_id
    assert _linked(process) == [publish.context.span_id]


async def test_a_periodic_tick_starts_its_own_trace_whoever_armed_the_scheduler(
    otel: Otel,
) -> None:
    # The scheduler's timer is armed (and fired, here) inside a request's span: the tick's
    # job must not join that request's trace.
    clock = ManualClock()
    periodic = Periodic(noop, every=60, name="tick")
    async with Backburner(tracing=otel.telemetry, clock=clock, periodic=[periodic]) as bg:
        with otel.tracer.start_as_current_span("request") as request:
            clock.advance(60)
        await bg.join()
        (runs,) = otel.metric("backburner.periodic.runs")
        assert (runs.attributes, runs.value) == ({"backburner.periodic.name": "tick"}, 1)
    publish, process = otel.one("publish default"), otel.one("process default")
    assert publish.parent is None
    assert publish.context.trace_id != request.get_span_context().trace_id
    assert process.parent is None
    assert _linked(process) == [publish.context.span_id]


async def test_a_job_recovered_from_the_journal_links_to_its_enqueue_span(
    otel: Otel, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.sqlite3"
    journal_jobs.calls.clear()
    first = Backburner(journal=path, tracing=otel.telemetry)
    await first.open()  # accepts, runs nothing: the job stays in the journal
    with otel.tracer.start_as_current_span("request"):
        handle = first.enqueue(journal_jobs.record, 7)
    await first.aclose()
    publish = otel.one("publish default")
    (stored,) = _rows(path, "trace")
    context = publish.context
    assert stored == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}",
    )
    async with Backburner(journal=path, tracing=otel.telemetry) as again:
        await again.join()
    assert journal_jobs.calls == [("record", 7)]
    process = otel.one("process default")
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == handle.id
    assert process.parent is None
    assert _linked(process) == [publish.context.span_id]
    assert process.context.trace_id != publish.context.trace_id


async def test_a_job_journaled_without_tracing_runs_when_recovered_with_it(
    otel: Otel, tmp_path: Path
) -> None:
    """A row written by an untraced executor has no trace: its attempt starts a trace of
    its own, linked to nothing (and the job runs)."""
    path = tmp_path / "jobs.sqlite3"
    journal_jobs.calls.clear()
    first = Backburner(journal=path, tracing=False)
    await first.open()  # accepts, runs nothing: the job stays in the journal
    handle = first.enqueue(journal_jobs.record, 5)
    await first.aclose()
    assert _rows(path, "trace") == [(None,)]
    async with Backburner(journal=path, tracing=otel.telemetry) as again:
        await again.join()
    assert journal_jobs.calls == [("record", 5)]
    process = otel.one("process default")
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == handle.id
    assert process.parent is None
    assert _linked(process) == []


async def test_a_schema_2_journal_is_migrated_and_its_jobs_run(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA application_id=1650616940")  # 0x62626A6C: "bbjl"
    for step in _MIGRATIONS[:2]:
        connection.executescript(step)
    connection.execute("PRAGMA user_version=2")
    connection.execute(
        "INSERT INTO jobs (id, name, queue, payload, state, attempt, enqueued_at) "
        "VALUES ('old-1', 'tests.record', 'default', '{\"args\":[3]}', 'queued', 0, 0)"
    )
    connection.close()
    journal_jobs.calls.clear()
    async with Backburner(journal=path, tracing=False) as bg:
        await bg.join()
    assert journal_jobs.calls == [("record", 3)]
    assert _rows(path, "id, state, trace") == [("old-1", "succeeded", None)]


async def test_the_counters_and_a_duration_histogram_go_to_the_meter(otel: Otel) -> None:
    async with Backburner(tracing=otel.telemetry, queues={"mail": QueueConfig()}) as bg:
        await bg.enqueue(noop)
        with pytest.raises(ValueError, match="no"):
            await bg.enqueue(fail, "no")
        await bg.options(queue="mail").enqueue(noop)
        by_queue = {
            p.attributes["messaging.destination.name"]: p.value
            for p in otel.metric("backburner.jobs.processed")
        }
        assert by_queue == {"default": 2, "mail": 1}
        (failed,) = [p for p in otel.metric("backburner.jobs.failed") if p.value]
        assert failed.attributes == {"messaging.destination.name": "default"}
        assert {p.value for p in otel.metric("backburner.workers")} == {4}
        durations = {
            (p.attributes["messaging.destination.name"], p.attributes["backburner.outcome"]): p
            for p in otel.metric("backburner.job.duration")
        }
        assert set(durations) == {
            ("default", "succeeded"),
            ("default", "failed"),
            ("mail", "succeeded"),
        }
        assert all(point.count == 1 for point in durations.values())
        text = render_metrics(bg)
        families = {family.name: family for family in BackburnerCollector(bg).collect()}
    # The Prometheus histogram, in the dashboard's text and in the prometheus_client collector.
    assert families["backburner_job_duration_seconds"].type == "histogram"
    assert 'backburner_job_duration_seconds_bucket{queue="default",le="+Inf"} 2' in text
    assert 'backburner_job_duration_seconds_count{queue="mail"} 1' in text
    assert "# TYPE backburner_job_duration_seconds histogram" in text


async def test_each_attempt_is_in_both_histograms_once_with_the_same_buckets(otel: Otel) -> None:
    async with Backburner(tracing=otel.telemetry) as bg:
        await test_metrics.run_each(bg)
        text = render_metrics(bg)
    points = otel.metric("backburner.job.duration")
    assert sum(point.count for point in points) == len(test_metrics.RUNS)
    assert list(points[0].explicit_bounds) == list(BOUNDS)
    counts = [sum(column) for column in zip(*(p.bucket_counts for p in points), strict=True)]
    buckets, total, count = test_metrics.histogram(text, "default")
    test_metrics.check_runs(buckets, total, count)  # counted once, by the queue
    assert cumulative(counts) == [buckets[bound] for bound in buckets]
    assert sum(point.sum for point in points) == pytest.approx(total, abs=1.0)


async def test_the_limits_and_yielding_figures_go_to_the_meter_too(otel: Otel) -> None:
    clock = ManualClock()
    limit = ConcurrencyLimit(1, name=test_metrics.ODD)
    gate = Gate()
    bg = Backburner(
        tracing=otel.telemetry,
        workers=4,
        clock=clock,
        yield_to_requests=YieldToRequests(target_lag=0.01),
    )
    async with bg:
        first = bg.options(limits=[limit]).enqueue(gate.hold)
        await gate.started.wait()
        held = [bg.options(limits=[limit]).enqueue(gate.hold) for _ in range(2)]
        bg.yielding.request_arrived()
        bg.yielding.lag(0.05)  # five times the target
        clock.advance(0.1)  # the controller's step
        names = {"backburner.limit.name": test_metrics.ODD, "backburner.limit.kind": "concurrency"}
        (running,) = otel.metric("backburner.limit.running")
        (holding,) = otel.metric("backburner.limit.held")
        assert (running.attributes, running.value) == (names, 1)
        assert (holding.attributes, holding.value) == (names, 2)
        (effective,) = otel.metric("backburner.workers.effective")
        assert effective.attributes == {"messaging.destination.name": "default"}
        assert effective.value == 2  # four halved
        (pressure,) = otel.metric("backburner.yield.pressure")
        assert pressure.value == pytest.approx(5.0)
        gate.opened.set()
        for one in [first, *held]:
            await one


async def test_executors_sharing_a_meter_provider_are_each_observed_while_running(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    first = Backburner(tracing=otel.telemetry, queues={"a": QueueConfig()})
    second = Backburner(tracing=otel.telemetry, queues={"b": QueueConfig()})
    async with first, second:
        await first.options(queue="a").enqueue(noop)
        await second.options(queue="b").enqueue(noop)
        processed = {
            p.attributes["messaging.destination.name"]: p.value
            for p in otel.metric("backburner.jobs.processed")
        }
        assert processed == {"default": 0, "a": 1, "b": 1}
    async with Backburner(tracing=otel.telemetry, queues={"c": QueueConfig()}):
        queues = {
            p.attributes["messaging.destination.name"] for p in otel.metric("backburner.workers")
        }
        assert queues == {"default", "c"}  # the closed executors are no longer observed
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


async def test_a_job_cancelled_before_it_ran_has_no_attempt_span(otel: Otel) -> None:
    gate = Gate()
    async with Backburner(tracing=otel.telemetry, workers=1) as bg:
        holding = bg.enqueue(gate.hold)
        waiting = bg.enqueue(noop)
        await gate.started.wait()
        assert waiting.cancel()
        gate.opened.set()
        await holding
    assert waiting.status is JobStatus.CANCELLED
    assert len(otel.finished("publish default")) == 2
    assert [_attr(s, "messaging.message.id") for s in otel.finished("process default")] == [
        holding.id
    ]


async def test_tracing_off_makes_no_spans_and_adds_nothing_to_a_job(otel: Otel) -> None:
    async with Backburner(tracing=False) as bg:
        handle = bg.enqueue(noop)
        await handle
        assert bg.telemetry is None
        assert handle.hooks is None
        # (The Prometheus histogram is the queue's own: it counts the job all the same.)
        assert 'backburner_job_duration_seconds_count{queue="default"} 1' in render_metrics(bg)
    assert otel.finished() == []


async def test_without_a_configured_provider_tracing_costs_nothing() -> None:
    # No tracer or meter provider was set in this process (the tests give theirs through
    # Telemetry): the API's defaults would drop every span.
    async with Backburner() as bg:
        handle = bg.enqueue(noop)
        await handle
        assert bg.telemetry is None
        assert handle.hooks is None


def test_the_tracing_setting_is_checked_where_it_is_written() -> None:
    with pytest.raises(TypeError, match="tracing must be True"):
        Backburner(tracing="yes")  # type: ignore[arg-type]


@job(name="tests.otel.sent_through_taskiq")
async def sent_through_taskiq(value: int) -> int:
    return value


async def test_a_taskiq_message_carries_the_enqueue_spans_traceparent(otel: Otel) -> None:
    from collections.abc import AsyncGenerator

    from taskiq import AsyncBroker, BrokerMessage

    from backburner.taskiq import TaskiqEngine

    class Recording(AsyncBroker):
        """A broker that keeps what it is sent (no worker: the message is what is tested)."""

        def __init__(self) -> None:
            super().__init__()
            self.sent: list[BrokerMessage] = []

        async def kick(self, message: BrokerMessage) -> None:
            self.sent.append(message)

        async def listen(self) -> AsyncGenerator[bytes, None]:  # pragma: no cover
            raise NotImplementedError
            yield b""

    broker = Recording()
    async with Backburner(engine=TaskiqEngine(broker), tracing=otel.telemetry) as bg:
        with otel.tracer.start_as_current_span("request"):
            handle = bg.enqueue(sent_through_taskiq, 5)
        await bg.join()
    assert handle.status is JobStatus.SENT
    context = otel.one("publish default").context
    (message,) = broker.sent
    assert message.task_id == handle.id
    assert message.labels["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert otel.finished("process default") == []  # it runs on the engine's workers


def test_the_core_runs_without_opentelemetry_installed() -> None:
    done = run_without_opentelemetry(
        """
        import asyncio
        import backburner, backburner.otel
        from backburner.dashboard._metrics import render_metrics

        async def job():
            return 42

        async def main():
            for tracing in (True, backburner.otel.Telemetry()):
                async with backburner.Backburner(tracing=tracing) as bg:
                    assert await bg.enqueue(job) == 42
                    assert bg.telemetry is None
                    render_metrics(bg)

        asyncio.run(main())
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
        print("ok")
        """,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _rows(path: Path, columns: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {columns} FROM jobs ORDER BY rowid").fetchall()
    finally:
        connection.close()
