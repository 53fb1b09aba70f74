"""One box, several processes: ``uvicorn --workers 3`` acts as one app.

Each test serves ``apps/box.py`` with three worker processes on 127.0.0.1. Events carry the pid
of the process that wrote them, so a test sees which process ran what.
"""

from __future__ import annotations

import contextlib
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


def spread_posts(server: Uvicorn, path: str, count: int) -> list[dict[str, Any]]:
    """``POST path`` ``count`` times, each on a new connection (the kernel picks the worker)."""
    answers = []
    for _ in range(count):
        with server.client() as client:
            answer = client.post(path)
            answer.raise_for_status()
            answers.append(answer.json())
    return answers


def test_a_unique_job_enqueued_from_many_requests_runs_once(serve: Serve, tmp_path: Path) -> None:
    """24 requests across the workers, one key: one job, run once, every answer names it."""
    server = box(serve, tmp_path, journal=True, job_ms=10_000, every=3600)
    answers = spread_posts(server, "/unique?key=once", 24)
    assert len({answer["id"] for answer in answers}) == 1, answers
    assert len({answer["pid"] for answer in answers}) > 1, "one worker took every request"
    events = server.wait_for(
        "the job's end", lambda events: bool(named(events, "unique done")), timeout=30
    )
    assert len(named(events, "unique ran")) == 1
    again = spread_posts(server, "/unique?key=once", 1)[0]  # its end freed the key
    assert again["id"] != answers[0]["id"]
    server.assert_no_errors()


def test_a_killed_worker_holding_a_unique_key_does_not_keep_it(
    serve: Serve, tmp_path: Path
) -> None:
    """SIGKILL the worker running a unique job: another takes the job over, runs it to its end,
    and the key is free again."""
    server = box(serve, tmp_path, journal=True, job_ms=4000, every=3600)
    held = spread_posts(server, "/unique?key=kill", 1)[0]
    ran = server.wait_for("the job's start", lambda events: bool(named(events, "unique ran")))
    victim = named(ran, "unique ran")[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    events = server.wait_for(
        "the job taken over and finished by another worker",
        lambda events: any(e["pid"] != victim for e in named(events, "unique done")),
        timeout=60,
    )
    assert named(events, "unique ran")[0]["pid"] == victim
    assert all(e["pid"] != victim for e in named(events, "unique ran")[1:])
    deadline = time.monotonic() + 30
    while True:  # its end is committed a moment after the job's last event
        again = spread_posts(server, "/unique?key=kill", 1)[0]
        if again["id"] != held["id"] or time.monotonic() > deadline:
            break
    assert again["id"] != held["id"], "the key stayed held after its job ended"


def test_the_dashboard_overview_lists_every_process_and_their_totals(
    serve: Serve, tmp_path: Path
) -> None:
    """With a journal: whichever worker answers, its overview shows all three (a browser)."""
    from playwright.sync_api import sync_playwright

    from ..browsers import launch

    server = box(serve, tmp_path, journal=True, every=3600, heartbeat=0.2, lease=2)
    pids = set()
    with server.client() as client:
        for _ in range(WORKERS * 10):
            pids.add(client.get("/whoami", headers={"Connection": "close"}).json()["pid"])
    server.wait_until(  # each has written a heartbeat since it started
        "every worker in the journal's overview",
        lambda: _processes_listed(server) == WORKERS,
        timeout=30,
    )
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{server.base_url}/bb/")
            rows = page.locator("#processes tbody tr")
            assert rows.count() == WORKERS
            shown = {int(pid) for pid in rows.evaluate_all("rows => rows.map(r => r.dataset.pid)")}
            assert len(shown) == WORKERS
            assert pids <= shown  # (the kernel may have sent every request to fewer of them)
            assert page.locator("#processes tfoot").inner_text().startswith(f"{WORKERS} processes")
            assert page.locator("#processes .badge", has_text="this one").count() == 1
        finally:
            browser.close()
    server.assert_no_errors()


def test_without_a_journal_the_dashboard_says_it_shows_one_process_of_several(
    serve: Serve, tmp_path: Path
) -> None:
    server = box(serve, tmp_path, journal=False, every=3600)
    with server.client() as client:
        page = client.get("/bb/").text
    assert f"of the {WORKERS} processes of this app on this host" in page
    assert "journal=" in page


def _processes_listed(server: Uvicorn) -> int:
    with server.client() as client:
        box = client.get("/bb/api/overview").json().get("box") or {}
    return len(box.get("processes", []))


def client_of_another_worker(server: Uvicorn, not_pid: int) -> httpx.Client:
    """A client whose (kept-alive) connection is served by a worker other than ``not_pid``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        client = server.client()
        if client.get("/whoami").json()["pid"] != not_pid:
            return client
        client.close()
    raise AssertionError(f"every connection went to worker {not_pid}")


SAME_ORIGIN = {"Accept": "application/json"}


def test_another_workers_job_is_shown_and_cancelled_through_the_journal(
    serve: Serve, tmp_path: Path
) -> None:
    """A job page asked of any worker finds the job; a cancel asked of another worker is a
    request its owner picks up within a second."""
    server = box(serve, tmp_path, journal=True, job_ms=60_000, every=3600, heartbeat=0.5)
    held = spread_posts(server, "/unique?key=far", 1)[0]
    server.wait_for("the job's start", lambda events: bool(named(events, "unique ran")))
    with contextlib.closing(client_of_another_worker(server, held["pid"])) as client:
        shown = client.get(f"/bb/api/jobs/{held['id']}").json()["job"]
        assert shown["elsewhere"] is True
        assert shown["process"] == held["pid"]
        assert shown["status"] == "running"
        page = client.get(f"/bb/jobs/{held['id']}").text
        assert f"pid {held['pid']}, another process sharing the journal" in page
        headers = {**SAME_ORIGIN, "Origin": server.base_url}
        asked = client.post("/bb/api/actions/cancel", data={"job": held["id"]}, headers=headers)
        assert asked.status_code == 200, asked.text
        assert "asked it to cancel" in asked.json()["message"]
        asked_at = time.monotonic()

        def cancelled() -> bool:
            job = client.get(f"/bb/api/jobs/{held['id']}").json()["job"]
            return bool(job["status"] == "cancelled")

        server.wait_until("the job cancelled by its owner", cancelled, timeout=30)
        assert time.monotonic() - asked_at < 5  # (within a second, and its commit; margin)
    assert not named(server.events(), "unique done")


def test_a_dead_job_of_another_worker_is_listed_and_retried_from_any_worker(
    serve: Serve, tmp_path: Path
) -> None:
    server = box(serve, tmp_path, journal=True, every=3600, heartbeat=0.2)
    with server.client() as client:
        failed = client.post("/fail", params={"number": 7}).json()
    server.wait_for("the job's failure", lambda events: bool(named(events, "fails ran")))
    with contextlib.closing(client_of_another_worker(server, failed["pid"])) as client:

        def listed() -> bool:
            return f'data-id="{failed["id"]}"' in client.get("/bb/dead").text

        server.wait_until("the dead job in the other worker's dead list", listed)
        assert "In the other processes" in client.get("/bb/dead").text
        headers = {**SAME_ORIGIN, "Origin": server.base_url}
        sent = client.post("/bb/api/actions/retry", data={"job": failed["id"]}, headers=headers)
        assert sent.status_code == 200, sent.text
        assert "sent to run again" in sent.json()["message"]
    server.wait_for(
        "the job run again", lambda events: len(named(events, "fails ran")) == 2, timeout=30
    )


ORDER = ["pending", "running", "succeeded"]


def test_a_status_polled_from_every_worker_is_right_from_enqueue_to_success(
    serve: Serve, tmp_path: Path
) -> None:
    """Enqueue on one worker, poll on all: every answer finds the job, and its status and
    progress only move forward, to success and its result."""
    server = box(serve, tmp_path, journal=True, job_ms=400, every=3600, heartbeat=0.5)
    with server.client() as client:
        enqueued = client.post("/steps", params={"count": 6}).json()
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not answers or answers[-1]["status"] != "succeeded":
        assert time.monotonic() < deadline, answers[-5:]
        with server.client() as client:  # a new connection: any worker may answer
            answer = client.get(f"/status/{enqueued['id']}")
        assert answer.status_code == 200, (answer.json(), enqueued)
        answers.append(answer.json())
    # Each worker's answers only move forward (the job's own worker answers from memory, the
    # others from the journal, up to a commit or a progress write behind: about a second).
    for pid in {a["pid"] for a in answers}:
        seen = [(ORDER.index(a["status"]), a["progress"] or 0) for a in answers if a["pid"] == pid]
        assert seen == sorted(seen), (pid, seen)
    elsewhere = [a for a in answers if a["pid"] != enqueued["pid"]]
    assert any(a["status"] == "running" and a["progress"] for a in elsewhere), (
        "no other worker ever saw the job's progress"
    )
    assert elsewhere, "only the enqueuer answered"
    assert answers[-1]["result"] == {"steps": 6}
    for _ in range(WORKERS * 3):  # and every worker knows its result now
        with server.client() as client:
            assert client.get(f"/status/{enqueued['id']}").json()["result"] == {"steps": 6}
    server.assert_no_errors()
