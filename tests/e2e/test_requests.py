"""Requests to a real uvicorn process: endpoints of every kind enqueue, jobs enqueue follow-ups."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from ._uvicorn import Event, Serve, running

pytestmark = pytest.mark.e2e

MARGIN = 3.0
KEYS = {"from-async", "from-async/follow-up", "from-sync", "from-sync/follow-up"}


def by_key(events: list[Event], name: str) -> dict[str, Event]:
    return {event["key"]: event for event in events if event["event"] == name}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Event]]:
    """``apps/endpoints.py``: one request to its async and one to its sync endpoint, each
    with its own ``X-Request-ID``; the jobs and their follow-ups ran; SIGTERM; exited."""
    with running(tmp_path_factory.mktemp("endpoints")) as start:
        server = start("endpoints")
        server.wait_ready()
        with server.client() as client:
            for kind in ("async", "sync"):
                answer = client.post(
                    f"/{kind}", params={"key": f"from-{kind}"}, headers={"X-Request-ID": kind}
                )
                answer.raise_for_status()
        server.wait_for(
            "every job and follow-up finished",
            lambda events: set(by_key(events, "finished")) >= KEYS,
        )
        server.send(signal.SIGTERM)
        code, _ = server.wait_exit(within=2.0 + MARGIN)
        assert code == -signal.SIGTERM
        server.assert_no_errors()
        yield server.events()


def test_async_and_sync_endpoints_enqueue_jobs_that_run(events: list[Event]) -> None:
    enqueued = by_key(events, "enqueued")
    assert enqueued["from-async"]["thread"] == "MainThread"
    assert enqueued["from-sync"]["thread"] != "MainThread"  # Starlette's thread pool
    assert {"from-async", "from-sync"} <= set(by_key(events, "finished"))


def test_a_job_enqueues_a_follow_up_through_background(events: list[Event]) -> None:
    enqueued = by_key(events, "enqueued")
    started = by_key(events, "started")
    # The async job enqueued from the loop, the sync job from its worker thread.
    assert enqueued["from-async/follow-up"]["thread"] == "MainThread"
    assert enqueued["from-sync/follow-up"]["thread"].startswith("backburner-")
    # The async job's follow-up is sync (a backburner thread), and the other way round.
    assert started["from-async/follow-up"]["thread"].startswith("backburner-")
    assert started["from-sync/follow-up"]["thread"] == "MainThread"
    assert set(by_key(events, "finished")) == KEYS
    assert not [event for event in events if event["event"] == "report"]


def test_a_context_variable_set_by_a_middleware_reaches_jobs_and_follow_ups(
    events: list[Event],
) -> None:
    seen = {key: event["request_id"] for key, event in by_key(events, "finished").items()}
    assert seen == {
        "from-async": "async",
        "from-async/follow-up": "async",
        "from-sync": "sync",
        "from-sync/follow-up": "sync",
    }


def test_a_fastapi_app_runs_jobs_with_the_same_middleware(serve: Serve) -> None:
    server = serve("fastapi_app")
    server.wait_ready()
    with server.client() as client:
        for kind in ("async", "sync", "dependency"):
            client.post(f"/{kind}", params={"key": f"fastapi-{kind}"}).raise_for_status()

        def processed() -> int:
            total: int = client.get("/stats").json()["total"]["processed"]
            return total

        server.wait_until("the three jobs processed", lambda: processed() == 3)
        stats = client.get("/stats").json()["total"]
    assert (stats["failed"], stats["pending"], stats["busy"]) == (0, 0, 0)
    finished = set(by_key(server.events(), "finished"))
    assert finished == {"fastapi-async", "fastapi-sync", "fastapi-dependency"}
    server.send(signal.SIGTERM)
    code, _ = server.wait_exit(within=2.0 + MARGIN)
    assert code == -signal.SIGTERM
    server.assert_no_errors()
