"""The status app served by a real uvicorn: the 202, polling, and event streams that end.

``apps/status.py`` is a FastAPI app whose report jobs step forward when the test says so.
Streams are read with httpx as a browser's ``EventSource`` would read them; every read has the
client's timeout (10 s), so a stream that does not end fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ._uvicorn import Event, Uvicorn, running

pytestmark = pytest.mark.e2e

MARGIN = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    with running(tmp_path_factory.mktemp("status")) as start:
        server = start("status", settings={"heartbeat": 1})
        server.wait_ready()
        yield server
        # (One test's job fails, on purpose: logged as an error. The app itself must not fail.)
        assert "Exception in ASGI application" not in server.output(), server.tail()


def sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event name, data as JSON) per event, ("comment", text) per comment line."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            yield "comment", line
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def start_report(server: Uvicorn, key: str, steps: int) -> httpx.Response:
    with server.client() as client:
        answer = client.post("/reports", params={"key": key, "steps": steps})
    assert answer.status_code == 202, answer.text
    return answer


def control(server: Uvicorn, what: str, **params: Any) -> None:
    with server.client() as client:
        client.post(f"/control/{what}", params=params).raise_for_status()


def events_url(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}/events?{parts.query}"


def served(server: Uvicorn, path: str) -> list[Event]:
    return [e for e in server.events() if e["event"] == "served" and e["path"] == path]


def test_a_post_answers_202_and_the_client_polls_its_signed_location_to_the_result(
    server: Uvicorn,
) -> None:
    answer = start_report(server, "polled", steps=2)
    location = answer.headers["location"]
    assert location.startswith(f"/status/{answer.json()['id']}?expires=")
    assert 1 <= int(answer.headers["retry-after"]) <= 60

    with server.client() as client:
        first = client.get(location).json()
        control(server, "step", key="polled", n=1)

        def reported(body: dict[str, Any]) -> bool:
            return body["progress"] is not None and body["progress"]["done"] == 1

        bodies: list[dict[str, Any]] = []
        server.wait_until("step 1 reported", lambda: reported(_get(client, location, bodies)))
        control(server, "step", key="polled", n=2)
        server.wait_until("the job succeeded", lambda: _get(client, location, bodies)["finished"])

    assert first["status"] in ("pending", "running")
    assert first["progress"] is None
    midway = next(body for body in bodies if reported(body))
    assert midway["progress"]["fraction"] == 0.5
    assert midway["progress"]["message"] == "step 1 of 2"
    assert bodies[-1]["status"] == "succeeded"
    assert bodies[-1]["result"] == {"key": "polled", "steps": 2}


def _get(client: httpx.Client, url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = client.get(url).raise_for_status().json()
    bodies.append(body)
    return body


def test_the_event_stream_follows_the_progress_and_ends_with_the_job(server: Uvicorn) -> None:
    location = start_report(server, "streamed", steps=2).headers["location"]
    url = events_url(location)
    seen: list[tuple[str, Any]] = []

    with server.client() as client, client.stream("GET", url) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse(stream.iter_lines())
        for name, data in events:
            seen.append((name, data))
            if name == "comment":
                continue
            progress = data["progress"]
            done = 0 if progress is None else progress["done"]
            if name != "end" and done < 2:
                control(server, "step", key="streamed", n=done + 1)
        # The loop above ended: the server closed the stream after its "end" event.

    names = [name for name, _ in seen if name != "comment"]
    assert (names[0], names[-1]) == ("status", "end")
    assert "progress" in names
    dones = [data["progress"]["done"] for name, data in seen if name == "progress"]
    assert dones == sorted(dones)
    assert dones[-1] in (1, 2)
    last = seen[-1][1]
    assert (last["status"], last["result"]) == ("succeeded", {"key": "streamed", "steps": 2})
    path = urlsplit(url).path
    server.wait_for("the stream's call returned", lambda _: bool(served(server, path)))


def test_a_stream_ends_when_its_job_fails(server: Uvicorn) -> None:
    location = start_report(server, "failing", steps=2).headers["location"]

    with server.client() as client, client.stream("GET", events_url(location)) as stream:
        events = sse(stream.iter_lines())
        name, _ = next(events)
        assert name == "status"
        control(server, "fail", key="failing")
        ends = [data for name, data in events if name == "end"]

    assert [(end["status"], end["finished"]) for end in ends] == [("failed", True)]
    assert ends[0]["error"] == "RuntimeError"  # its type: the message is not a client's


def test_a_quiet_stream_sends_heartbeat_comments(server: Uvicorn) -> None:
    location = start_report(server, "quiet", steps=1).headers["location"]

    with server.client() as client, client.stream("GET", events_url(location)) as stream:
        events = sse(stream.iter_lines())
        comment = next(data for name, data in events if name == "comment")
        control(server, "step", key="quiet", n=1)
        assert [name for name, _ in events if name != "comment"][-1] == "end"

    assert comment == ": keep-alive"


def test_a_client_that_goes_away_ends_its_stream_on_the_server(server: Uvicorn) -> None:
    location = start_report(server, "left", steps=1).headers["location"]
    url = events_url(location)
    path = urlsplit(url).path

    with server.client() as client, client.stream("GET", url) as stream:
        events = sse(stream.iter_lines())  # (kept: a generator dropped closes the connection)
        name, _ = next(events)
        assert name == "status"
        assert served(server, path) == []
    # The connection is closed; the job still waits for its step.

    server.wait_for("the stream's call returned", lambda _: bool(served(server, path)))
    control(server, "step", key="left", n=1)


def test_streams_refuse_what_the_json_route_refuses(server: Uvicorn) -> None:
    answer = start_report(server, "refused", steps=1)
    job_id = answer.json()["id"]
    with server.client() as client:
        unsigned = client.get(f"/status/{job_id}/events")
        unknown = client.get("/open/no-such-job/events")
        other = start_report(server, "other", steps=1).json()["id"]
        query = urlsplit(answer.headers["location"]).query
        borrowed = client.get(f"/status/{other}/events?{query}")
    control(server, "step", key="refused", n=1)
    control(server, "step", key="other", n=1)

    assert (unsigned.status_code, unknown.status_code, borrowed.status_code) == (403, 404, 403)


def test_sigterm_ends_open_streams_so_the_server_can_shut_down(tmp_path: Any) -> None:
    """uvicorn waits for open responses before its lifespan shutdown: a stream that lasted
    as long as its job (here: forever) would keep the server from ever stopping."""
    with running(tmp_path) as start:
        server = start("status")
        server.wait_ready()
        location = start_report(server, "forever", steps=1).headers["location"]
        with server.client() as client, client.stream("GET", events_url(location)) as stream:
            events = sse(stream.iter_lines())
            name, _ = next(events)
            assert name == "status"
            server.send(signal.SIGTERM)
            rest = list(events)  # ends when the server closes the stream

        code, _ = server.wait_exit(within=2.0 + MARGIN)

    assert [name for name, _ in rest if name != "comment"] == []
    assert code == -signal.SIGTERM
