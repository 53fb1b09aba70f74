"""The event stream's framing and ends, driven by a scripted lookup (no server needed).

What a real client sees through uvicorn (the stream ends with its job, the client leaving,
the heartbeat, SIGTERM) is in ``tests/e2e/test_status.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from backburner import JobInfo, JobStatus, NotRunning, Progress
from backburner.status._events import EventStream, event

pytestmark = pytest.mark.anyio

BASE = JobInfo(
    id="job-1",
    name="build_report",
    queue="default",
    status=JobStatus.PENDING,
    attempt=0,
    progress=None,
    enqueued_at=1.0,
    started_at=None,
    finished_at=None,
    result=None,
    has_result=False,
    error=None,
    meta={"user": "ada"},
    position=3,
    expires_at=None,
)


def at(**changes: Any) -> JobInfo:
    return dataclasses.replace(BASE, **changes)


def progress(done: float) -> Progress:
    return Progress(done=done, total=10, message=None, updated_at=2.0)


async def stream(script: Sequence[JobInfo | Exception | None]) -> list[dict[str, Any]]:
    """Run a stream whose lookups answer ``script[1:]`` in turn; the messages it sent."""
    answers = iter(script[1:])
    sent: list[dict[str, Any]] = []

    async def look_up() -> JobInfo | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    first = script[0]
    assert isinstance(first, JobInfo)
    events = EventStream(first, look_up, interval=0.001, heartbeat=3600, headers=[])
    with anyio.fail_after(10):
        await events({"type": "http"}, receive, send)  # type: ignore[arg-type]
    return sent


def parsed(sent: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """(event, id, data) of each event in the body."""
    body = b"".join(message.get("body", b"") for message in sent[1:]).decode()
    found = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], int(fields["id"]), json.loads(fields["data"])))
    return found


async def test_an_event_is_sent_when_the_status_or_the_progress_changes_and_the_end_closes_it() -> (
    None
):
    script = [
        at(),
        at(),  # nothing changed: nothing sent
        at(position=2),
        at(status=JobStatus.RUNNING, attempt=1, position=None),
        at(status=JobStatus.RUNNING, attempt=1, position=None, progress=progress(4)),
        at(status=JobStatus.RUNNING, attempt=1, position=None, progress=progress(4)),
        at(status=JobStatus.SUCCEEDED, attempt=1, position=None, result=7, has_result=True),
    ]

    sent = await stream(script)

    events = parsed(sent)
    assert [(name, event_id) for name, event_id, _ in events] == [
        ("status", 1),
        ("progress", 2),
        ("status", 3),
        ("progress", 4),
        ("end", 5),
    ]
    assert [data["position"] for _, _, data in events[:2]] == [3, 2]
    assert events[3][2]["progress"]["fraction"] == 0.4
    assert (events[-1][2]["status"], events[-1][2]["result"]) == ("succeeded", 7)
    assert "meta" not in events[0][2]
    assert sent[0] == {"type": "http.response.start", "status": 200, "headers": []}
    assert sent[1]["body"] == b"retry: 2000\n\n"
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_job_forgotten_while_streamed_ends_with_null() -> None:
    events = parsed(await stream([at(), None]))

    assert [(name, data) for name, _, data in events][-1] == ("end", None)


async def test_an_expired_job_ends_the_stream_at_once() -> None:
    events = parsed(await stream([at(status=JobStatus.EXPIRED)]))

    assert [(name, data["status"]) for name, _, data in events] == [("end", "expired")]


async def test_an_executor_that_stopped_ends_the_stream_without_an_end_event() -> None:
    sent = await stream([at(), NotRunning("closed")])

    assert [name for name, _, _ in parsed(sent)] == ["status"]
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_an_event_is_one_line_of_json_whatever_its_text_holds() -> None:
    frame = event("progress", {"message": "two\nlines\r\n\u2028"}, 7)

    assert frame.count(b"\n") == 4  # event, id, data, and the blank line
    assert frame.startswith(b"event: progress\nid: 7\ndata: {")
