"""Several processes and restarts: ``--workers 4``, ``--reload``, ``--limit-max-requests``.

Each serves ``apps/load.py``. Its events carry the pid of the process that wrote them, so a
test can tell the processes apart in one event log: which process accepted a job, which ran
it, which reported it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._runs import MARGIN, Run, assert_every_job_accounted_for, named
from ._uvicorn import Event, Serve, Uvicorn, running

pytestmark = pytest.mark.e2e

BUDGET = {"shutdown_timeout": 3.0, "cancel_grace": 1.0, "workers": 4}
CHILDREN = 4
BUSY_SECONDS = 2.0  # long enough for four of uvicorn's health checks of each child


def by_pid(events: list[Event]) -> dict[int, list[Event]]:
    grouped: dict[int, list[Event]] = {}
    for event in events:
        grouped.setdefault(event["pid"], []).append(event)
    return grouped


def startups(events: list[Event]) -> list[int]:
    return [event["pid"] for event in named(events, "startup done")]


def spread(server: Uvicorn, path: str, key: str, want: int, **params: Any) -> dict[int, Any]:
    """``POST path?once=1`` on new connections until ``want`` processes took the work.

    Which process accepts a connection is the kernel's choice; ``once=1`` makes a process that
    already has the work answer without taking more. Returns each process's answer.
    """
    taken: dict[int, Any] = {}
    deadline = time.monotonic() + 30
    n = 0
    while len(taken) < want:
        assert time.monotonic() < deadline, f"only {len(taken)} processes took {path}"
        with server.client() as client:  # a new connection each time
            answer = client.post(path, params={"key": f"{key}-{n}", "once": 1, **params})
        answer.raise_for_status()
        body = answer.json()
        if body["ids"]:
            taken[body["pid"]] = body
        n += 1
    return taken


def accepted_by(answers: dict[int, Any]) -> dict[str, str]:
    return {key: job_id for body in answers.values() for key, job_id in body["ids"].items()}


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run_of(server: Uvicorn, events: list[Event], accepted: dict[str, str]) -> Run:
    """The events of one process as a ``Run``, with the jobs it accepted."""
    return Run(server, accepted, events=events)


# --workers 4: one fixture does the work, the tests check each promise.


@pytest.fixture(scope="module")
def four_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Busy jobs in every child, then long jobs in every child, then SIGTERM to the parent."""
    with running(tmp_path_factory.mktemp("workers")) as start:
        server = start("load", settings=BUDGET, args=["--workers", str(CHILDREN)])
        server.wait_for(
            "every child started", lambda events: len(set(startups(events))) == CHILDREN, 60
        )
        server.wait_ready()
        busy = spread(server, "/busy", "busy", CHILDREN, seconds=BUSY_SECONDS)
        server.wait_for(
            "the busy jobs finished in every child",
            lambda events: len(named(events, "finished")) == 2 * CHILDREN,
            timeout=60,
        )
        after_busy = server.events()
        long = spread(server, "/long", "long", CHILDREN)
        long_keys = {key for key in accepted_by(long) if not key.endswith("/short")}
        server.wait_for(
            "the long jobs running in every child",
            lambda events: long_keys <= {event["key"] for event in named(events, "started")},
        )
        server.send(signal.SIGTERM)
        code, elapsed = server.wait_exit(within=BUDGET["shutdown_timeout"] + MARGIN + 10)
        yield {
            "server": server,
            "busy": busy,
            "long": long,
            "after_busy": after_busy,
            "events": server.events(),
            "code": code,
            "elapsed": elapsed,
        }


def test_every_child_took_work_and_ran_it_in_its_own_process(four_workers: dict[str, Any]) -> None:
    events = four_workers["events"]
    enqueued_in = {event["key"]: event["pid"] for event in named(events, "enqueued")}
    started_in = {event["key"]: event["pid"] for event in named(events, "started")}
    assert len(set(enqueued_in.values())) == CHILDREN
    assert started_in
    for key, pid in started_in.items():
        assert pid == enqueued_in[key], f"{key} accepted by {enqueued_in[key]}, ran in {pid}"
    for pid, answer in four_workers["busy"].items():
        assert {enqueued_in[key] for key in answer["ids"]} == {pid}


def test_no_child_was_killed_by_the_health_check_while_jobs_ran(
    four_workers: dict[str, Any],
) -> None:
    assert len(startups(four_workers["after_busy"])) == CHILDREN  # no child started again
    assert len(startups(four_workers["events"])) == CHILDREN
    stderr = four_workers["server"].output()
    assert "died" not in stderr
    busy_pids = {event["pid"] for event in named(four_workers["after_busy"], "finished")}
    assert busy_pids == set(four_workers["busy"])


def test_sigterm_to_the_parent_stops_every_child_within_the_budget(
    four_workers: dict[str, Any],
) -> None:
    assert four_workers["elapsed"] < BUDGET["shutdown_timeout"] + MARGIN
    assert four_workers["code"] == 0  # the parent exits normally after joining its children
    assert_gone(list(four_workers["long"]))


def test_each_child_reports_exactly_its_own_unfinished_jobs(four_workers: dict[str, Any]) -> None:
    server, events = four_workers["server"], four_workers["events"]
    accepted = {**accepted_by(four_workers["busy"]), **accepted_by(four_workers["long"])}
    for pid, own in by_pid(events).items():
        if pid == server.process.pid:
            continue  # the parent runs no app
        mine = {e["key"]: e["id"] for e in named(own, "enqueued")}
        run = run_of(server, own, {key: accepted[key] for key in mine})
        assert_every_job_accounted_for(run)
        assert {key.split("/")[1]: status for key, status in run.status_by_key.items()} == {
            "sleeps-long": "cancelled",
            "blocks-thread": "abandoned",
        }
        assert named(own, "app shutdown"), f"child {pid} never ran its app's shutdown"


# --reload: a restart waits for the old process's drain, never longer than its deadline.

RESTART = {"shutdown_timeout": 2.0, "cancel_grace": 0.5, "workers": 4}


def test_a_reload_does_not_hang_on_long_jobs_and_reports_them(serve: Serve, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    trigger = watched / "trigger.py"
    trigger.write_text("VERSION = 1\n")
    server = serve("load", settings=RESTART, args=["--reload", "--reload-dir", str(watched)])
    server.wait_ready()
    with server.client() as client:
        first = client.post("/long", params={"key": "first"}).raise_for_status().json()
    server.wait_for("the long jobs running", lambda events: len(named(events, "started")) >= 2)

    touched = time.time()
    trigger.write_text("VERSION = 2\n")  # the reloader polls mtimes: a change, not a new file
    events = server.wait_for(
        "a second process serving", lambda events: len(startups(events)) == 2, timeout=30
    )
    old_pid, new_pid = startups(events)
    assert old_pid == first["pid"] != new_pid
    old = run_of(server, by_pid(events)[old_pid], first["ids"])
    [shutdown] = named(old.events, "app shutdown")
    assert shutdown["t"] - touched < RESTART["shutdown_timeout"] + MARGIN
    assert_every_job_accounted_for(old)
    assert old.status_by_key == {
        "first/sleeps-long": "cancelled",
        "first/blocks-thread": "abandoned",
    }

    # The new process works, and SIGTERM to the reloader drains it the same way.
    server.wait_ready()
    with server.client() as client:
        second = client.post("/long", params={"key": "second"}).raise_for_status().json()
    assert second["pid"] == new_pid
    server.wait_for(
        "the new process's long jobs running",
        lambda events: len([e for e in named(events, "started") if e["pid"] == new_pid]) >= 2,
    )
    server.send(signal.SIGTERM)
    server.wait_exit(within=RESTART["shutdown_timeout"] + MARGIN)
    new = run_of(server, by_pid(server.events())[new_pid], second["ids"])
    assert_every_job_accounted_for(new)
    assert set(new.status_by_key) == {"second/sleeps-long", "second/blocks-thread"}
    assert_gone([old_pid, new_pid])


# --limit-max-requests: the process ends itself after N requests, draining first.


def test_a_process_ending_at_its_request_limit_drains_and_reports_in_time(serve: Serve) -> None:
    # Three requests: the readiness check, then two that each enqueue long jobs.
    server = serve("load", settings=RESTART, args=["--limit-max-requests", "3"])
    server.wait_ready()
    accepted: dict[str, str] = {}
    with server.client() as client:
        for key in ("a", "b"):
            accepted.update(
                client.post("/long", params={"key": key}).raise_for_status().json()["ids"]
            )
    last_request = time.monotonic()
    code, _ = server.wait_exit(within=RESTART["shutdown_timeout"] + MARGIN)
    assert time.monotonic() - last_request < RESTART["shutdown_timeout"] + MARGIN
    assert code == 0
    run = run_of(server, server.events(), accepted)
    assert_every_job_accounted_for(run)
    assert set(run.status_by_key.values()) <= {"cancelled", "abandoned"}
    assert {"a/sleeps-long", "b/sleeps-long"} <= set(run.status_by_key)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/health", timeout=2)
    server.assert_no_errors()


def test_a_child_restarted_at_its_request_limit_drains_and_reports_in_time(serve: Serve) -> None:
    """``--workers 2 --limit-max-requests 3``: a child ends itself after 3 requests and the
    parent starts another; the old child's jobs finish or are reported, within its deadline."""
    server = serve("load", settings=RESTART, args=["--workers", "2", "--limit-max-requests", "3"])
    server.wait_for("both children started", lambda events: len(startups(events)) == 2, 60)
    accepted: dict[str, str] = {}
    deadline = time.monotonic() + 60
    n = 0
    while len(startups(server.events())) < 3:  # until the parent replaced a child
        assert time.monotonic() < deadline, f"no child restarted{server.tail()}"
        try:
            with server.client() as client:  # a new connection: either child may take it
                answer = client.post("/long", params={"key": f"r{n}"})
            accepted.update(answer.raise_for_status().json()["ids"])
        except httpx.TransportError:  # both children are draining: nobody listens for now
            time.sleep(0.05)  # a retry interval, not a wait for something to happen
        n += 1
    events = server.events()
    ended = [pid for pid, own in by_pid(events).items() if named(own, "app shutdown")]
    assert ended, "a child was replaced without running its shutdown"
    for pid in ended:
        own = by_pid(events)[pid]
        mine = {e["key"]: e["id"] for e in named(own, "enqueued")}
        run = run_of(server, own, {key: accepted[key] for key in mine})
        assert_every_job_accounted_for(run)
        assert set(run.status_by_key.values()) <= {"cancelled", "abandoned"}
        last_request = max(e["t"] for e in named(own, "enqueued"))
        [shutdown] = named(own, "app shutdown")
        assert shutdown["t"] - last_request < RESTART["shutdown_timeout"] + MARGIN
    assert "died" in server.output()  # the parent saw the child go and replaced it
    server.send(signal.SIGTERM)
    code, _ = server.wait_exit(within=RESTART["shutdown_timeout"] + MARGIN)
    assert code == 0
