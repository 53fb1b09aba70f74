"""Backpressure in a real server: a million enqueues stop at ``max_pending`` with ``QueueFull``,
``aenqueue`` waits for room, and the process's resident memory stays flat."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ._runs import MARGIN, named
from ._uvicorn import Serve, Uvicorn

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
