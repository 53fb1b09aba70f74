"""One box, several processes: ``uvicorn --workers 3`` acts as one app.

Each test serves ``apps/box.py`` with three worker processes on 127.0.0.1. Events carry the pid
of the process that wrote them, so a test sees which process ran what.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._uvicorn import Event, Serve, Uvicorn

pytestmark = pytest.mark.e2e

WORKERS = 3


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event["event"] == name]


def box(serve: Serve, tmp_path: Path, *, journal: bool, **settings: float | str) -> Uvicorn:
    """``apps/box.py`` under ``uvicorn --workers 3``, once every worker has started."""
    if journal:
        settings["journal"] = str(tmp_path / "jobs.sqlite3")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    server = serve(
        "box",
        settings=settings,
        args=["--workers", str(WORKERS)],
        env={"XDG_RUNTIME_DIR": str(runtime)},
    )
    server.wait_ready(timeout=30)
    server.wait_until(
        f"{WORKERS} workers started",
        lambda: server.output().count("Application startup complete") >= WORKERS,
        timeout=30,
    )
    return server


def ticks_by_second(events: list[Event]) -> dict[int, list[int]]:
    """The pids that ran the periodic job, by the second (a tick of the grid) they ran in."""
    seconds: dict[int, list[int]] = {}
    for event in named(events, "tick"):
        seconds.setdefault(math.floor(event["t"]), []).append(event["pid"])
    return seconds


@pytest.mark.parametrize("journal", [False, True], ids=["in-memory", "journal"])
def test_a_periodic_job_fires_once_per_tick_across_the_workers(
    serve: Serve, tmp_path: Path, journal: bool
) -> None:
    """``every=1`` for several seconds: one run a second, whichever worker wins the tick."""
    server = box(serve, tmp_path, journal=journal)
    started = time.time()
    events = server.wait_for(
        "8 ticks after every worker started",
        lambda events: sum(e["t"] > started for e in named(events, "tick")) >= 8,
        timeout=30,
    )
    seconds = {s: pids for s, pids in ticks_by_second(events).items() if s > started}
    twice = {s: pids for s, pids in seconds.items() if len(pids) > 1}
    assert not twice, f"ticks fired by more than one worker: {twice}{server.tail()}"
    covered = sorted(seconds)
    missed = set(range(covered[0], covered[-1] + 1)) - set(covered)
    assert len(missed) <= 1, f"ticks nobody fired: {sorted(missed)}"  # (a worker's GC pause)
    with server.client() as client:
        fired_by = {
            client.get("/stats").json()["periodic"][0]["fired_by"] for _ in range(WORKERS * 3)
        }
    pids = {pid for pids in seconds.values() for pid in pids}
    assert fired_by <= pids | {None}, "stats name a process that never fired"
    assert fired_by - {None}, "no worker's stats say who fired the latest tick"
    warned = [
        e["message"]
        for e in named(server.events(), "log")
        if "processes of this app run side by side" in e["message"]
    ]
    if journal:
        assert not warned, "processes sharing a journal share their unique keys"
    else:
        # One warning for the box (two if a worker started late: each count is said once).
        assert warned, "three in-memory workers with unique keys, and not a word"
        assert f"{WORKERS} processes of this app" in warned[-1]
        assert len(warned) == len(set(warned)) <= 2
    server.assert_no_errors()
