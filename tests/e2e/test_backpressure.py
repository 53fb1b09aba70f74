"""Backpressure in a real server: a million enqueues stop at ``max_pending`` with ``QueueFull``,
``aenqueue`` waits for room, and the process's resident memory stays flat."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ._runs import MARGIN, named
from ._uvicorn import Event, Serve, Uvicorn

pytestmark = pytest.mark.e2e

WORKERS = 4
MAX_PENDING = 10_000
MB = 1024 * 1024


def memory(server: Uvicorn) -> dict[str, int]:
    """The process's resident set now and at its peak, in bytes (``/proc/<pid>/status``)."""
    fields = {}
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024  # "123 kB"
    return fields


def test_a_million_enqueues_stop_at_max_pending_and_memory_stays_flat(serve: Serve) -> None:
    server = serve("load", settings={"workers": WORKERS, "max_pending": MAX_PENDING})
    server.wait_ready()
    with server.client() as client:
        client.get("/ping").raise_for_status()  # warm: the first request's allocations
        before = memory(server)

        # Jobs that wait for /release: nothing finishes while a million enqueues come in.
        flood = client.post("/flood", params={"count": 1_000_000}, timeout=120).json()
        after_flood = memory(server)
        assert flood["accepted"] == MAX_PENDING + WORKERS  # the workers' jobs are not waiting
        assert flood["pending"] == MAX_PENDING
        assert flood["refused"] == 1_000_000 - flood["accepted"]
        assert "queue 'default' is full" in flood["message"]
        assert "(max_pending=10000)" in flood["message"]

        client.post("/release").raise_for_status()
        # Now aenqueue: 50,000 quick jobs through a queue of 10,000; each call waits for room.
        aflood = client.post("/aflood", params={"count": 50_000}, timeout=120).json()
        after_aflood = memory(server)
    assert aflood["most_pending"] <= MAX_PENDING
    assert aflood["processed"] == flood["accepted"] + 50_000
    assert aflood["failed"] == 0

    peak = max(after_flood["VmHWM"], after_aflood["VmHWM"])
    assert peak - before["VmRSS"] < 50 * MB, (
        f"resident memory: {before['VmRSS'] / MB:.1f} MB before, {after_flood['VmRSS'] / MB:.1f}"
        f" MB after the flood, {after_aflood['VmRSS'] / MB:.1f} MB after aenqueue, peak "
        f"{peak / MB:.1f} MB"
    )
    server.send(signal.SIGTERM)
    server.wait_exit(within=3.0 + MARGIN)
    assert not named(server.events(), "report"), "every accepted job should have run"
    server.assert_no_errors()


def test_requests_refused_by_a_full_queue_get_503_with_retry_after_and_few_log_lines(
    serve: Serve,
) -> None:
    """Against a full queue, each request is answered 503 with ``Retry-After`` (not a 500 with
    a traceback each), and the refusals are counted in at most one log line a second."""
    server = serve("load", settings={"workers": 1, "max_pending": 1})
    server.wait_ready()
    refusals = 300
    began = time.monotonic()
    with server.client() as client:
        # One job holds the only worker, one waits: the queue is full.
        client.post("/gated", params={"count": 2}).raise_for_status()
        answers = [client.post("/gated", params={"count": 1}) for _ in range(refusals)]
        assert {(a.status_code, a.headers.get("retry-after")) for a in answers} == {(503, "1")}
        assert "Service Unavailable" in answers[0].text
        assert "max_pending" not in answers[0].text  # a client is told nothing of the inside

        def counted(events: list[Event]) -> int:
            return sum(int(line["message"].split()[1]) for line in refused_lines(events))

        events = server.wait_for("every refusal counted", lambda e: counted(e) == refusals)
        elapsed = time.monotonic() - began
        client.post("/release").raise_for_status()
    lines = refused_lines(events)
    assert len(lines) <= elapsed + 1, f"{len(lines)} lines in {elapsed:.1f}s"
    assert "queue 'default' is full" in lines[0]["message"]
    server.assert_no_errors()  # no traceback, no "Exception in ASGI application"


def refused_lines(events: list[Event]) -> list[Event]:
    return [e for e in named(events, "log") if "with 503 Service Unavailable" in e["message"]]
