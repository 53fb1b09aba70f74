"""Shutdown of a real uvicorn process: every accepted job finishes or is reported, in time.

Each run serves ``apps/drain.py``, enqueues over HTTP, signals the process and reads the event
log the app wrote: ``enqueued`` (key and job id), ``started``, ``finished``, and the shutdown
report with the ids of the jobs that did not finish.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from ._runs import MARGIN, Run, assert_every_job_accounted_for, named, position, started
from ._uvicorn import Event, Serve, Uvicorn, running

pytestmark = pytest.mark.e2e


def enqueue_short(server: Uvicorn, count: int, sync_every: int = 4) -> dict[str, str]:
    """Enqueue ``count`` jobs of 1 to 5 ms through a few requests; their keys and ids."""
    accepted: dict[str, str] = {}
    batch = 500
    with server.client() as client:
        for first in range(0, count, batch):
            params = {"first": first, "count": min(batch, count - first), "sync_every": sync_every}
            response = client.post("/short", params=params)
            response.raise_for_status()
            accepted.update(response.json())
    assert len(accepted) == count
    return accepted


def enqueue_one(server: Uvicorn, job: str, key: str) -> dict[str, str]:
    with server.client() as client:
        response = client.post("/one", params={"job": job, "key": key})
        response.raise_for_status()
        accepted: dict[str, str] = response.json()
        return accepted


# A signal while 2,000 short jobs are pending: with room in shutdown_timeout, all finish.

SHUTDOWN_TIMEOUT = 5.0
SIGNALS = {
    "SIGTERM": (signal.SIGTERM, 1, "uvloop"),
    "SIGINT": (signal.SIGINT, 1, "uvloop"),
    "five SIGTERMs within 0.5s": (signal.SIGTERM, 5, "uvloop"),
    "SIGTERM on asyncio's own loop": (signal.SIGTERM, 1, "asyncio"),
}


@pytest.fixture(scope="module", params=list(SIGNALS))
def pending_work(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """2,000 jobs of 1-5 ms on 8 workers, then the signal(s) at once; the server has exited."""
    sig, count, loop = SIGNALS[request.param]
    with running(tmp_path_factory.mktemp("pending-work")) as start:
        server = start(
            "drain",
            settings={"workers": 8, "shutdown_timeout": SHUTDOWN_TIMEOUT},
            args=["--loop", loop],
        )
        server.wait_ready()
        run = Run(server, enqueue_short(server, 2000))
        for n in range(count):
            if n:
                time.sleep(0.1)  # spaces the signals out: the stimulus, not a wait for anything
            server.send(sig)
        run.finish(within=SHUTDOWN_TIMEOUT + MARGIN + 10)  # the test asserts the real bound
        yield run


def test_every_accepted_job_finished_or_was_reported(pending_work: Run) -> None:
    assert pending_work.drained() > 0, "the signal came after the work was done"
    assert_every_job_accounted_for(pending_work)


def test_the_process_exits_within_shutdown_timeout_of_the_signal(pending_work: Run) -> None:
    assert pending_work.elapsed < SHUTDOWN_TIMEOUT + MARGIN
    # Ended by its own signal, re-raised by uvicorn (SIGINT: a KeyboardInterrupt it catches).
    assert pending_work.exit_code in (0, -signal.SIGTERM)
    pending_work.server.assert_no_errors()


def test_the_apps_shutdown_runs_after_the_jobs_drained(pending_work: Run) -> None:
    events = pending_work.events
    last_finished = max(i for i, event in enumerate(events) if event["event"] == "finished")
    assert position(events, "app shutdown") > last_finished


def test_a_job_enqueued_in_startup_runs_after_the_apps_startup(pending_work: Run) -> None:
    events = pending_work.events
    first_started = min(i for i, event in enumerate(events) if event["event"] == "started")
    assert position(events, "enqueued", "from-startup") < position(events, "startup done")
    assert position(events, "startup done") < first_started
    assert position(events, "started", "from-startup") == first_started


def test_a_deadline_mid_drain_reports_exactly_the_jobs_that_did_not_finish(serve: Serve) -> None:
    """2 workers and 1 s: about a third finish, the rest are cancelled or never start."""
    server = serve("drain", settings={"workers": 2, "shutdown_timeout": 1.0, "cancel_grace": 0.4})
    server.wait_ready()
    run = Run(server, enqueue_short(server, 2000, sync_every=0))  # async: cancellable at once
    server.send(signal.SIGTERM)
    run.finish(within=1.0 + MARGIN)

    assert_every_job_accounted_for(run)
    finished = {event["key"] for event in named(run.events, "finished")}
    assert finished & set(run.accepted), "the deadline came before any job could finish"
    assert run.status_by_key, "every job finished before the deadline"
    # Cancelled: running ones, and all that never started. (On a starved CPU, a running job may
    # not get through its cancellation within cancel_grace and be reported abandoned instead.)
    assert "cancelled" in run.status_by_key.values()
    assert set(run.status_by_key.values()) <= {"cancelled", "abandoned"}
    assert run.exit_code == -signal.SIGTERM
    server.assert_no_errors()


# Jobs that outlive the deadline: shutdown_timeout=4, cancel_grace=1.5, 4 workers.

STUBBORN = {"shutdown_timeout": 4.0, "cancel_grace": 1.5, "workers": 4}


@pytest.fixture(scope="module")
def stubborn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Four jobs that outlive any deadline running, two waiting, then SIGTERM; exited."""
    with running(tmp_path_factory.mktemp("stubborn")) as start:
        server = start("drain", settings=STUBBORN)
        server.wait_ready()
        with server.client() as client:
            run = Run(server, client.post("/stubborn").raise_for_status().json())
        server.wait_for(
            "the four stubborn jobs running",
            started("sleeps-long", "swallows-cancel", "blocks-thread", "cleans-up"),
        )
        server.send(signal.SIGTERM)
        run.finish(within=STUBBORN["shutdown_timeout"] + MARGIN + 10)
        yield run


def test_jobs_that_outlive_the_deadline_do_not_keep_the_process(stubborn: Run) -> None:
    assert stubborn.elapsed < STUBBORN["shutdown_timeout"] + MARGIN
    assert stubborn.exit_code == -signal.SIGTERM
    stubborn.server.assert_no_errors()


def test_the_unfinished_jobs_are_reported_in_one_warning(stubborn: Run) -> None:
    assert [report["level"] for report in named(stubborn.events, "report")] == ["WARNING"]
    assert not named(stubborn.events, "log"), "backburner logged more than the report"


def test_each_unfinished_job_is_reported_by_id_with_what_became_of_it(stubborn: Run) -> None:
    assert stubborn.status_by_key == {
        "sleeps-long": "cancelled",
        "swallows-cancel": "abandoned",  # caught its cancellation and slept on
        "blocks-thread": "abandoned",  # a thread cannot be interrupted
        "cleans-up": "cancelled",  # cleaned up within cancel_grace, then stopped
        "waits-1": "cancelled",  # never started
        "waits-2": "cancelled",
    }
    assert_every_job_accounted_for(stubborn)


def test_jobs_waiting_at_the_deadline_never_start(stubborn: Run) -> None:
    keys = {event["key"] for event in named(stubborn.events, "started")}
    assert not keys & {"waits-1", "waits-2"}


def test_a_cancelled_job_finishes_its_shielded_cleanup_within_cancel_grace(stubborn: Run) -> None:
    events = stubborn.events
    assert position(events, "cleanup started", "cleans-up") < position(
        events, "cleanup done", "cleans-up"
    )
    assert position(events, "cleanup done", "cleans-up") < position(events, "report")
    assert position(events, "swallowed", "swallows-cancel") < position(events, "report")


def test_the_apps_shutdown_runs_after_the_report(stubborn: Run) -> None:
    assert position(stubborn.events, "report") < position(stubborn.events, "app shutdown")


# Bugs found by this suite, fixed: each test states the documented behaviour.


def test_a_sync_job_that_ends_within_cancel_grace_is_not_abandoned(serve: Serve) -> None:
    """The job sleeps 2 s; cancellation comes about 1.2 s in, the deadline about 3.2 s in."""
    server = serve("drain", settings={"workers": 1, "shutdown_timeout": 3.0, "cancel_grace": 2.0})
    server.wait_ready()
    run = Run(server, enqueue_one(server, "sleeps-two-seconds-in-thread", "two-seconds"))
    server.wait_for("the sync job running", started("two-seconds"))
    server.send(signal.SIGTERM)
    run.finish(within=3.0 + MARGIN)

    assert_every_job_accounted_for(run)
    assert run.status_by_key == {}
    assert not named(run.events, "log"), "backburner warned about a job that finished in time"


def test_sigint_exits_in_time_even_if_a_job_ignores_cancellation(serve: Serve) -> None:
    server = serve("drain", settings={"workers": 1, "shutdown_timeout": 1.0, "cancel_grace": 0.5})
    server.wait_ready()
    run = Run(server, enqueue_one(server, "swallows-cancel", "swallows-cancel"))
    server.wait_for("the job running", started("swallows-cancel"))
    server.send(signal.SIGINT)
    server.wait_for("the shutdown report", lambda events: bool(named(events, "report")))
    run.finish(within=1.0 + MARGIN)

    assert run.status_by_key == {"swallows-cancel": "abandoned"}


#: Jobs that raise what is not an ``Exception`` (``apps/drain.py``), and what each raises.
EXITING_JOBS = {
    "exits-in-thread": "SystemExit: 3",
    "exits-on-loop": "SystemExit: 4",
    "interrupts-on-loop": "KeyboardInterrupt",
}


def test_a_job_raising_systemexit_or_keyboardinterrupt_fails_alone(serve: Serve) -> None:
    """``sys.exit()`` in a sync job, ``SystemExit`` and ``KeyboardInterrupt`` in async ones,
    beside a job that ignores its cancellation: each fails with an ERROR line saying so, the
    server serves on, and SIGTERM still drains and reports."""
    server = serve("drain", settings={"workers": 4, "shutdown_timeout": 2.0, "cancel_grace": 1.0})
    server.wait_ready()
    run = Run(server, enqueue_one(server, "swallows-cancel", "swallows-cancel"))
    server.wait_for("the stubborn job running", started("swallows-cancel"))
    for name in EXITING_JOBS:
        run.accepted.update(enqueue_one(server, name, name))

    def errors(events: list[Event]) -> list[str]:
        return [e["message"] for e in named(events, "log") if e["level"] == "ERROR"]

    events = server.wait_for(
        "an error line per job", lambda events: len(errors(events)) >= len(EXITING_JOBS)
    )
    for name, exception in EXITING_JOBS.items():
        [line] = [message for message in errors(events) if run.accepted[name] in message]
        assert exception in line
        assert "contained" in line
    # Still serving: a request answers, and a job enqueued now runs.
    with server.client() as client:
        assert client.get("/health").status_code == 200
        run.accepted.update(
            client.post("/short", params={"first": 0, "count": 1, "sync_every": 0}).json()
        )
    server.wait_for(
        "the later job finished",
        lambda events: any(e.get("key") == "short-0" for e in named(events, "finished")),
    )
    server.send(signal.SIGTERM)
    run.finish(within=2.0 + MARGIN)

    assert run.exit_code == -signal.SIGTERM
    assert run.status_by_key == {"swallows-cancel": "abandoned"}
    assert position(run.events, "report") < position(run.events, "app shutdown")
    assert "never retrieved" not in server.output()


def test_a_job_that_stops_the_event_loop_ends_the_process_without_a_drain(serve: Serve) -> None:
    """What the docs (how-to/failures.md) say of ``loop.stop()`` in a job (a programming error): the server's
    ``asyncio.run`` fails, every task is cancelled, and the process exits 1 at once, with no
    drain, no report and no app shutdown."""
    server = serve("drain", settings={"workers": 2, "shutdown_timeout": 5.0, "cancel_grace": 1.0})
    server.wait_ready()
    enqueue_one(server, "cleans-up", "cleans-up")
    server.wait_for("the other job running", started("cleans-up"))
    enqueue_one(server, "stops-loop", "stops-loop")
    code, _ = server.wait_exit(within=5.0)

    events = server.events()
    assert code == 1
    assert "RuntimeError: Event loop stopped before Future completed." in server.output()
    assert named(events, "cleanup started"), "the running job was not cancelled"
    assert not named(events, "report")
    assert not named(events, "app shutdown")
    assert not [e for e in named(events, "finished") if e["key"] == "stops-loop"]
