"""OpenTelemetry end to end: a FastAPI app under real uvicorn, traced by the ASGI
instrumentation; the request's span and the job's spans are one trace."""

from __future__ import annotations

import signal

import pytest

from ._uvicorn import Event, Serve

pytestmark = pytest.mark.e2e

MARGIN = 3.0


def spans(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event["event"] == "span" and event["name"] == name]


def test_a_request_and_the_job_it_enqueued_share_one_trace(serve: Serve) -> None:
    server = serve("traced")
    server.wait_ready()
    with server.client() as client:
        job_id = client.post("/signup", params={"user": "ann"}).json()["id"]
    events = server.wait_for(
        "the job's attempt span", lambda events: bool(spans(events, "process default"))
    )
    (process,) = spans(events, "process default")
    (publish,) = spans(events, "publish default")
    (request,) = [
        event
        for event in events
        if event["event"] == "span" and event["kind"] == "SERVER" and "signup" in event["name"]
    ]
    assert process["attributes"]["messaging.message.id"] == job_id
    assert process["kind"] == "CONSUMER"
    assert publish["kind"] == "PRODUCER"
    assert process["trace_id"] == publish["trace_id"] == request["trace_id"]
    assert process["parent"] == publish["span_id"]
    in_trace = {e["span_id"] for e in events if e["event"] == "span"}
    assert publish["parent"] in in_trace  # under the request's span (or its send span)
    assert [e["user"] for e in events if e["event"] == "welcomed"] == ["ann"]
    server.send(signal.SIGTERM)
    code, _ = server.wait_exit(within=2.0 + MARGIN)
    assert code == -signal.SIGTERM
    server.assert_no_errors()
