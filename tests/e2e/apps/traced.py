"""A FastAPI app traced by OpenTelemetry: the ASGI instrumentation opens a span per request,
backburner a span per enqueue and per attempt. Every finished span becomes a ``span`` event
in the event log (the SDK's span processor, exporting to the file the test reads)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from backburner import BackburnerMiddleware, background

from ._events import record, watch_backburner_log

watch_backburner_log()


class SpansToEvents(SpanExporter):
    """Writes each span to the event log: its name, kind, ids, parent and links."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            assert span.context is not None
            record(
                "span",
                name=span.name,
                kind=span.kind.name,
                trace_id=f"{span.context.trace_id:032x}",
                span_id=f"{span.context.span_id:016x}",
                parent=None if span.parent is None else f"{span.parent.span_id:016x}",
                links=[f"{link.context.span_id:016x}" for link in span.links],
                attributes=dict(span.attributes or {}),
            )
        return SpanExportResult.SUCCESS


# As an app configures tracing: once, at import, before the server starts.
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(SpansToEvents()))
trace.set_tracer_provider(provider)


async def welcome(user: str) -> None:
    record("welcomed", user=user)


app = FastAPI()
app.add_middleware(BackburnerMiddleware, workers=2, shutdown_timeout=2.0)
app.add_middleware(OpenTelemetryMiddleware)  # the outermost: the request's span is current


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@app.post("/signup")
async def signup(user: str) -> dict[str, str]:
    job = background.enqueue(welcome, user)
    return {"id": job.id}
