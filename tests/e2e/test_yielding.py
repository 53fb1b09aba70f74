"""Yielding to requests in a real uvicorn: while requests are slow to answer, the executor
starts fewer jobs (its effective workers fall, running jobs go on), and when they are quick
again every worker comes back.

The signal here is the request latency the middleware sees (a slow endpoint that awaits, so
the machine's own load cannot fake or hide it); the loop-lag target is out of reach. Each
step polls ``/stats`` with a generous deadline; nothing is timed.
"""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from ._runs import MARGIN
from ._uvicorn import Serve, Uvicorn

pytestmark = pytest.mark.e2e

WORKERS = 4
DEADLINE = 30.0


def yielding(client: httpx.Client) -> dict[str, Any]:
    stats = client.get("/stats").json()
    assert stats["yielding"] is not None
    return {**stats["yielding"], "busy": stats["total"]["busy"], "total": stats["total"]}


def poll(server: Uvicorn, client: httpx.Client, what: str, condition: Any, slow: bool) -> None:
    """Until ``condition(yielding stats)`` holds: each round, a slow request first if ``slow``."""

    def holds() -> bool:
        if slow:
            client.get("/slow", params={"seconds": 0.3}).raise_for_status()
        return bool(condition(yielding(client)))

    server.wait_until(what, holds, DEADLINE)


def test_slow_requests_lower_the_effective_workers_and_quick_ones_give_them_back(
    serve: Serve,
) -> None:
    server = serve("yielding", settings={"workers": WORKERS})
    server.wait_ready()
    with server.client() as client:
        client.post("/fill", params={"count": WORKERS + 2}).raise_for_status()
        poll(server, client, "every worker busy", lambda s: s["busy"] == WORKERS, slow=False)
        assert yielding(client)["effective_workers"] == {"default": WORKERS}

        poll(
            server,
            client,
            "the effective workers falling to the floor while requests are slow",
            lambda s: s["effective_workers"] == {"default": 1} and s["state"] == "yielding",
            slow=True,
        )
        seen = yielding(client)
        # Running jobs are never cancelled: all four still hold their workers.
        assert seen["busy"] == WORKERS
        assert seen["total"]["cancelled"] == 0

        poll(
            server,
            client,
            "every worker back once requests are quick",
            lambda s: s["effective_workers"] == {"default": WORKERS} and s["state"] == "calm",
            slow=False,
        )
        client.post("/release").raise_for_status()
        poll(server, client, "every job done", lambda s: s["total"]["processed"] == 6, slow=False)
    server.send(signal.SIGTERM)
    server.wait_exit(within=8.0 + MARGIN)
    server.assert_no_errors()
