"""The spans of a job: PRODUCER at enqueue, CONSUMER per attempt, as the messaging
semantic conventions name them (``messaging.system`` is ``backburner``, the destination is
the queue, the message id is the job's id).

The first attempt of a job enqueued inside a trace (a request's, another job's), to run now,
is a child of its enqueue span: one trace from the request to the job. Every other attempt
starts its own trace with a link to the enqueue span: a retry, a delayed job, a periodic tick
(the scheduler fires in an empty context), a job recovered from a journal or retried by hand.
That enqueue span's context is kept on the job (``job.trace``); its W3C ``traceparent`` is
written out (``traceparent_of``) only for the journal and for the message to a remote engine.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from .._errortext import error_line
from .._job import Job, JobHooks
from .._status import JobStatus
from ._meters import Observed, meters_for

__all__ = ["JobTelemetry", "Observed", "TracedHooks", "configured", "parse_traceparent"]

_SYSTEM = "backburner"
_RETRYING, _ABANDONED = JobStatus.RETRYING, JobStatus.ABANDONED
_SUCCEEDED = JobStatus.SUCCEEDED
_PRODUCER, _CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER
_LIBRARY = "backburner"


class JobTelemetry:
    """One executor's tracer, meters and the hooks its jobs hold while tracing is on."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, observed: Observed) -> None:
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer(_LIBRARY, _version())
        self.meters = meters_for(meter_provider, observed, _version())
        #: The hooks of a job that has none of its own (most jobs): made once.
        self.plain = TracedHooks(self, None)
        self._hooks: dict[int, TracedHooks] = {}
        # A span open per running attempt. (Keyed by job: a job's slots stay as they are.)
        self._attempts: dict[Job[Any], Span] = {}
        # The histogram's attributes by queue, then outcome: made once each, not per attempt.
        self._labels: dict[str, dict[JobStatus, dict[str, str]]] = {}
        self._record = self.meters.histogram.record

    def hooks_for(self, inner: JobHooks | None) -> TracedHooks:
        """The traced hooks around ``inner`` (a journal's, say): one object per inner one."""
        if inner is None:
            return self.plain
        if isinstance(inner, TracedHooks):
            return inner
        hooks = self._hooks.get(id(inner))
        if hooks is None or hooks.inner is not inner:
            hooks = self._hooks[id(inner)] = TracedHooks(self, inner)
        return hooks

    def publishing(
        self, job: Job[Any], run_at: float | None, stored: bool
    ) -> AbstractContextManager[Any]:
        """The enqueue span, to wrap the admission in: ended when it returns, an error if it
        raised. A job already enqueued once (recovered, retried by hand) gets none."""
        hooks = job.hooks
        job.hooks = self.plain if hooks is None else self.hooks_for(hooks)
        if stored:
            if job.trace is None:  # recovered from a row written without tracing
                job.trace = _UNTRACED
            return nullcontext()
        current = otel_context.get_current()  # read once: the parent, and whether there is one
        span = self.tracer.start_span(
            f"publish {job.queue}",
            current,
            _PRODUCER,
            {
                "messaging.system": _SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "messaging.operation": "publish",
                "backburner.job.name": job.name,
            },
        )
        context = span.get_span_context()
        if context.is_valid:  # (its traceparent is written when asked for: `traceparent_of`)
            continues = (
                run_at is None and trace.get_current_span(current).get_span_context().is_valid
            )
            job.trace = (None, context, continues)
        else:  # a provider that records nothing: nothing to continue or link to
            job.trace = _UNTRACED
        return span

    def began(self, job: Job[Any]) -> None:
        """An attempt begins, in the job's own context: its span becomes the current one."""
        traced = job.trace
        assert traced is not None  # set when it was enqueued (or recovered) while tracing
        traceparent, enqueued, continues = traced
        attempt = job.attempt
        if continues and attempt == 1:
            context = trace.set_span_in_context(NonRecordingSpan(enqueued))
            links = None
        else:  # (a recovered job knows its enqueue span by its traceparent alone)
            context = _NO_PARENT
            linked = enqueued if enqueued is not None else parse_traceparent(traceparent)
            links = None if linked is None else [Link(linked)]
        span = self.tracer.start_span(
            f"process {job.queue}",
            context,
            _CONSUMER,
            {
                "messaging.system": _SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "messaging.operation": "process",
                "backburner.job.name": job.name,
                "backburner.attempt": attempt,
            },
            links,
        )
        self._attempts[job] = span
        # Current in the job's context (its task runs in it; a sync job's thread gets a copy),
        # so the spans its code opens are children of this one. Never detached: the context
        # is the job's alone, and the next attempt sets its own span.
        otel_context.attach(trace.set_span_in_context(span))

    def ended(self, job: Job[Any], outcome: JobStatus, exc: BaseException | None) -> None:
        """An attempt ended (``outcome`` retrying, or the job's end state)."""
        span = self._attempts.pop(job, None)
        if span is None:
            return  # it never began: cancelled or dropped while it waited
        started = job.started_at
        ended = job.finished_at  # set just now, if the job reached its end
        if ended is None or outcome is _RETRYING:
            ended = time.time()
        duration = 0.0 if started is None or ended < started else ended - started
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, error_line(exc)))
            span.set_attribute("error.type", type(exc).__qualname__)
        elif outcome is _ABANDONED:
            span.set_status(Status(StatusCode.ERROR, "abandoned: still running at the deadline"))
        if outcome is not _SUCCEEDED:  # (each attribute costs the SDK a lock and a check)
            span.set_attribute("backburner.outcome", outcome.value)
        span.end()
        by_outcome = self._labels.get(job.queue)
        if by_outcome is None:
            by_outcome = self._labels[job.queue] = {}
        labels = by_outcome.get(outcome)  # (by the member: its `.value` is a property call)
        if labels is None:
            labels = by_outcome[outcome] = {
                "messaging.destination.name": job.queue,
                "backburner.outcome": outcome.value,
            }
        self._record(duration, labels)


class TracedHooks(JobHooks):
    """The hooks of a job while tracing is on: a span per attempt around ``inner``'s work."""

    __slots__ = ("inner", "telemetry")

    # Every attempt is reported: traced jobs take the queue's guarded path.
    guarded = True

    def __init__(self, telemetry: JobTelemetry, inner: JobHooks | None) -> None:
        self.telemetry = telemetry
        self.inner = inner

    def began(self, job: Job[Any]) -> Any:
        """Open the attempt's span, then whatever ``inner`` does (a journal's commit)."""
        self.telemetry.began(job)
        return None if self.inner is None else self.inner.began(job)

    def will_retry(self, job: Job[Any]) -> None:
        """End the attempt's span with its error."""
        self.telemetry.ended(job, _RETRYING, job.exception())
        if self.inner is not None:
            self.inner.will_retry(job)

    def reopened(self, job: Job[Any]) -> None:
        """Retried by hand: ``inner`` hears of it."""
        if self.inner is not None:
            self.inner.reopened(job)

    def finished(self, job: Job[Any], status: JobStatus, exc: BaseException | None) -> None:
        """End the last attempt's span (if one ran) with the job's end."""
        try:
            self.telemetry.ended(job, status, exc)
        finally:
            if self.inner is not None:
                self.inner.finished(job, status, exc)

    async def settle(self, job: Job[Any]) -> None:
        """Whatever ``inner`` waits for."""
        if self.inner is not None:
            await self.inner.settle(job)

    def where(self) -> str:
        """Where ``inner`` says the job runs."""
        return "this process" if self.inner is None else self.inner.where()


_NO_PARENT = otel_context.Context()
# The trace of a job whose enqueue span is not known: nothing to continue or link to.
_UNTRACED: tuple[str | None, Any, bool] = (None, None, False)


def parse_traceparent(traceparent: str | None) -> SpanContext | None:
    """The span context a W3C ``traceparent`` names; None if there is none or it is malformed."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return context if context.is_valid else None


def configured() -> bool:
    """True once the app has set a global tracer or meter provider (the SDK's, say)."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    # The API's stand-in until one is set has no public class to test against.
    return type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backburner")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without install
        return "0"
