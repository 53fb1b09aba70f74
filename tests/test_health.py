"""``health_app``: ``/live`` and ``/ready`` say what is wrong, and only what is wrong.

The probes are asked in-process through httpx's ASGI transport, on the executor's own loop; the
drain after a real SIGTERM is in ``tests/e2e/test_operations.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from backburner import (
    Backburner,
    BackburnerMiddleware,
    ConcurrencyLimit,
    Job,
    JobOptions,
    QueueConfig,
)
from backburner.health import HealthApp, health_app
from backburner.testing import ManualClock

from . import journal_jobs
from .jobs import Gate, noop

pytestmark = pytest.mark.anyio


async def probe(app: HealthApp, path: str) -> tuple[int, dict[str, Any]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        response = await client.get(path)
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return response.status_code, body


def failing(body: dict[str, Any]) -> dict[str, str]:
    """The failing checks, by name, with their reasons."""
    return {
        name: check["reason"]
        for name, check in body["checks"].items()
        if check["status"] == "failing"
    }


async def test_ready_fails_while_starting_and_passes_once_running() -> None:
    bg = Backburner()
    probes = health_app(bg)
    status, body = await probe(probes, "/ready")
    assert (status, body["status"]) == (503, "failing")
    assert failing(body) == {"executor": "starting"}  # (bg given, not running yet)
    assert (await probe(probes, "/live"))[0] == 200  # nothing died: it has not started
    async with bg:
        status, body = await probe(probes, "/ready")
        assert (status, failing(body)) == (200, {})
        assert set(body["checks"]) == {"loop", "scheduler", "workers", "executor", "queues"}
        assert all(set(check) == {"status", "reason"} for check in body["checks"].values())


async def test_ready_fails_from_the_moment_the_drain_begins() -> None:
    gate = Gate()
    bg = Backburner(shutdown_timeout=30)
    probes = health_app(bg)
    await bg.start()
    assert (await probe(probes, "/ready"))[0] == 200
    bg.enqueue(gate.hold)
    await gate.started.wait()
    closing = asyncio.create_task(bg.aclose())
    await anyio.wait_all_tasks_blocked()  # aclose() waits for the running job
    assert not bg.running
    status, body = await probe(probes, "/ready")
    assert status == 503
    assert failing(body) == {"executor": "shutting down: the executor drains its jobs"}
    assert (await probe(probes, "/live"))[0] == 200  # draining is no reason to be killed
    gate.opened.set()
    await closing


async def test_ready_fails_when_a_queue_with_waiting_jobs_started_none_for_stall_after() -> None:
    clock = ManualClock()
    gate = Gate()
    async with Backburner(workers=1, clock=clock) as bg:
        probes = health_app(bg, stall_after=30)
        bg.enqueue(gate.hold)
        await gate.started.wait()
        waiting = bg.enqueue(noop, "a secret argument")
        assert (await probe(probes, "/ready"))[0] == 200  # seen waiting: the count starts
        clock.advance(29)
        assert (await probe(probes, "/ready"))[0] == 200
        clock.advance(1)
        status, body = await probe(probes, "/ready")
        assert status == 503
        reason = failing(body)["queues"]
        assert reason == "waiting jobs but none started for stall_after=30s: 'default' (30s)"
        assert (await probe(probes, "/live"))[0] == 200
        gate.opened.set()
        await waiting
        await bg.join()
        status, body = await probe(probes, "/ready")
        assert (status, failing(body)) == (200, {})


async def test_a_queue_that_keeps_starting_jobs_is_not_stalled_nor_a_paused_one() -> None:
    clock = ManualClock()
    gate = Gate()
    async with Backburner(workers=1, clock=clock) as bg:
        probes = health_app(bg, stall_after=30)
        bg.enqueue(gate.hold)
        await gate.started.wait()
        bg.enqueue(noop)
        await probe(probes, "/ready")
        clock.advance(20)
        gate.opened.set()  # the slot frees: the waiting job starts
        await bg.join()
        gate.opened.clear()
        bg.enqueue(gate.hold)
        bg.enqueue(noop)
        clock.advance(20)  # 40 s since the first look, but a job started in between
        assert (await probe(probes, "/ready"))[0] == 200
        bg.pause("default")
        clock.advance(60)
        assert (await probe(probes, "/ready"))[0] == 200  # held on purpose: not a stall
        gate.opened.set()
        bg.resume("default")
        await bg.join()


async def test_jobs_a_limit_holds_are_not_a_stall() -> None:
    # A concurrency limit (or a rate limit) holds them on purpose, with workers free: a
    # stall fails /ready, which takes the pod out of service for doing what it was told.
    clock = ManualClock()
    gate = Gate()
    one_at_a_time = ConcurrencyLimit(1)
    async with Backburner(workers=2, clock=clock) as bg:
        probes = health_app(bg, stall_after=30)
        limited = bg.options(limits=[one_at_a_time])
        limited.enqueue(gate.hold)
        await gate.started.wait()
        held = limited.enqueue(noop)
        assert bg.stats().queues["default"].held == 1
        assert (await probe(probes, "/ready"))[0] == 200
        clock.advance(60)
        status, body = await probe(probes, "/ready")
        assert (status, failing(body)) == (200, {})
        gate.opened.set()
        await held


async def test_live_fails_after_the_loop_was_blocked_past_max_loop_block() -> None:
    async def blocks_the_loop() -> None:
        time.sleep(0.5)  # noqa: ASYNC251 - the bug this check is for

    async with Backburner() as bg:
        probes = health_app(bg, max_loop_block=0.1)
        assert (await probe(probes, "/live"))[0] == 200  # the first probe starts the heartbeat
        await bg.enqueue(blocks_the_loop)
        status, body = await probe(probes, "/live")
        assert status == 503
        assert failing(body)["loop"].startswith("the event loop was blocked for 0.")
        assert "(max_loop_block=0.1s)" in failing(body)["loop"]
        assert (await probe(probes, "/ready"))[0] == 503  # not live: not ready either


class StoppedClock:
    """A clock whose timers never fire: a scheduler whose wake-up was lost."""

    def __init__(self) -> None:
        self.time = 1_767_225_600.0

    def now(self) -> float:
        return self.time

    def call_at(self, when: float, callback: Callable[[], None], loop: object) -> StoppedClock:
        return self

    def cancel(self) -> None:
        pass


async def test_live_fails_when_the_scheduler_falls_behind_its_timers() -> None:
    clock = StoppedClock()
    async with Backburner(clock=clock) as bg:
        probes = health_app(bg, scheduler_late=60)
        bg.enqueue_in(10, noop)
        clock.time += 70  # due 60 s ago, and never called
        assert (await probe(probes, "/live"))[0] == 200
        clock.time += 1
        status, body = await probe(probes, "/live")
        assert status == 503
        assert failing(body) == {
            "scheduler": "the scheduler's soonest call is 61s overdue (scheduler_late=60s)"
        }


async def test_a_journal_that_stopped_writing_fails_both_probes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="backburner")  # its ERROR is another test's
    path = tmp_path / "journal.sqlite3"
    async with Backburner(journal=path) as bg:
        probes = health_app(bg)
        await bg.enqueue(journal_jobs.record, "before")
        status, body = await probe(probes, "/ready")
        assert (status, body["checks"]["journal"]["status"]) == (200, "ok")
        await asyncio.to_thread(path.unlink)
        with pytest.raises(Exception, match="was deleted or renamed"):
            bg.enqueue(journal_jobs.record, "after")
        for path_asked in ("/live", "/ready"):
            status, body = await probe(probes, path_asked)
            assert status == 503
            assert "was deleted or renamed" in failing(body)["journal"]


class CancellingEngine:
    """A remote engine whose client cancels its own send: the sender task ends with it."""

    name = "a broker whose client cancels itself"
    send_timeout = 5.0
    retry_sends_for = 5.0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def check(self, label: str, options: JobOptions, delayed: bool) -> None:
        pass

    async def send(self, job: Job[Any], task_name: str, due: float | None) -> None:
        raise asyncio.CancelledError  # as a client torn down under the send would

    async def outcome(self, job: Job[Any]) -> tuple[bool, Any, int]:
        raise NotImplementedError


async def test_live_fails_when_a_remote_queue_lost_its_senders() -> None:
    async with Backburner(
        workers=2, queues={"remote": QueueConfig(workers=1, engine=CancellingEngine())}
    ) as bg:
        probes = health_app(bg)
        status, body = await probe(probes, "/live")
        assert (status, body["checks"]["workers"]["status"]) == (200, "ok")
        job = bg.options(queue="remote").enqueue(journal_jobs.record, 1)
        await job.wait()  # cancelled with its send; its sender task ended with it
        status, body = await probe(probes, "/live")
        assert status == 503
        assert failing(body) == {
            "workers": "1 of the 1 sender tasks of queue 'remote' ended (1 cancelled, 0 raised): "
            "its jobs are no longer sent to a broker whose client cancels itself"
        }


async def test_ready_fails_while_more_jobs_than_max_journal_lag_wait_to_be_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    async with Backburner(journal=path) as bg:
        probes = health_app(bg, max_journal_lag=0)
        await bg.enqueue(journal_jobs.record, "before")
        # Another connection holds the write lock: the writer's commit waits for it.
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            held = asyncio.create_task(bg.aenqueue(journal_jobs.record, "held"))
            await anyio.wait_all_tasks_blocked()  # queued for the writer, waiting for its commit
            status, body = await probe(probes, "/ready")
            assert status == 503
            assert failing(body) == {"journal": "1 jobs wait to be written (max_journal_lag=0)"}
            assert (await probe(probes, "/live"))[0] == 200  # slow is not dead
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await held
        assert (await probe(probes, "/ready"))[0] == 200


def test_mounted_under_the_middleware_it_finds_the_executor_and_answers_only_its_paths() -> None:
    app = BackburnerMiddleware(Starlette(routes=[Mount("/health", health_app())]))
    with TestClient(app) as client:
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()["status"]) == (200, "ok")
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/other").status_code == 404
        refused = client.post("/health/ready")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


def test_bad_settings_are_refused_where_written() -> None:
    with pytest.raises(TypeError, match="stall_after must be a number of seconds"):
        health_app(stall_after="60")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_loop_block must be a finite number"):
        health_app(max_loop_block=0)
    with pytest.raises(ValueError, match="max_journal_lag must be 0 or more"):
        health_app(max_journal_lag=-1)
    with pytest.raises(TypeError, match="takes a Backburner or None"):
        health_app("bg")  # type: ignore[arg-type]
