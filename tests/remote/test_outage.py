"""Redis stops mid-run: clear errors at enqueue, and no acknowledged job is lost.

A job is acknowledged once ``aenqueue`` returned it, or once its handle says ``sent``. Redis
here keeps an append-only file synced at every write, so what it acknowledged survives a
SIGKILL; the test kills it, checks the errors, restarts it on the same data, and waits until
every acknowledged job has run (its id recorded by the worker) or was reported.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

from backburner import Backburner, BrokerUnavailable, JobStatus
from backburner.taskiq import redis_engine

from ._processes import RedisServer, TaskiqProcess
from .jobs import record

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

RUN_DEADLINE = 60.0
REDELIVER_AFTER = 2.0


def recorded(path: Path) -> set[str]:
    """The tokens the worker recorded so far."""
    return set(path.read_text().split()) if path.exists() else set()


async def run_until_recorded(
    bg: Backburner, path: Path, ids: set[str], worker: TaskiqProcess
) -> None:
    """Wait until the record file holds every token in ``ids`` (or fail, with the worker's log).

    Meanwhile send a new job every second, as live traffic would: taskiq-redis reclaims the
    jobs a dead worker held only after a read of the stream that found new ones.
    """
    deadline = time.monotonic() + RUN_DEADLINE
    nudges = 0
    while time.monotonic() < deadline:
        if ids <= recorded(path):
            return
        await bg.aenqueue(record, str(path), f"nudge-{nudges}")
        nudges += 1
        await anyio.sleep(1.0)
    missing = sorted(ids - recorded(path))
    raise AssertionError(f"never ran: {missing[:10]}...\n{worker.output()[-3000:]}")


@pytest.fixture
def anyio_backend() -> str:
    """Once, on asyncio: the outage is the subject here, not the event loop."""
    return "asyncio"


async def test_redis_stopping_mid_run_gives_clear_errors_and_loses_no_acknowledged_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis", persistent=True)
    redis.start()
    queue = f"outage-{secrets.token_hex(4)}"
    # A worker that had taken jobs off the stream when Redis died may die with it (taskiq
    # restarts it): what it held is delivered again once idle for redeliver_after.
    env = {"BACKBURNER_TEST_QUEUE": queue, "BACKBURNER_TEST_REDELIVER": str(REDELIVER_AFTER)}
    worker = TaskiqProcess("worker", redis.url, tmp_path, ["--workers", "1"], env=env)
    path = str(tmp_path / "ran.txt")
    try:
        engine = redis_engine(redis.url, queue_name=queue, retry_sends_for=60, send_timeout=1)
        hasty = redis_engine(redis.url, queue_name=queue, retry_sends_for=0.3, send_timeout=1)
        async with Backburner(engine=engine) as bg, Backburner(engine=hasty) as hasty_bg:
            acknowledged = set()
            for number in range(20):
                await bg.aenqueue(record, path, f"acknowledged-{number}")
                acknowledged.add(f"acknowledged-{number}")
            redis.stop()  # SIGKILL: a crash, not a polite shutdown

            with pytest.raises(BrokerUnavailable) as refused:
                await bg.aenqueue(record, path, "never")
            message = str(refused.value)
            assert f"taskiq RedisStreamBroker at 127.0.0.1:{redis.port}" in message
            assert "Check that the broker is up" in message
            assert "enqueue it again" in message

            # Sync enqueue cannot wait for the broker: its jobs wait in the buffer, tried again.
            buffered = [bg.enqueue(record, path, f"buffered-{n}") for n in range(10)]
            assert all(job.status is JobStatus.PENDING for job in buffered)
            # One that could not be sent in time (retry_sends_for=0.3) is reported by id.
            with caplog.at_level(logging.ERROR, "backburner"):
                given_up = hasty_bg.enqueue(record, path, "given-up")
                await given_up.wait()
            assert given_up.status is JobStatus.FAILED
            assert isinstance(given_up.exception(), BrokerUnavailable)
            assert given_up in hasty_bg.failures()
            assert any(given_up.id in r.getMessage() for r in caplog.records)
            assert hasty_bg.stats().total.send_failed == 1

            redis.start()  # the same port and data: what it acknowledged is there
            await bg.join()  # the buffer drains once Redis is back
            assert all(job.status is JobStatus.SENT for job in buffered)
            assert hasty_bg.retry(given_up) is given_up  # sent again, by hand
            await hasty_bg.join()
            # mypy keeps its narrowing from the FAILED assertion above across the awaits.
            assert given_up.status is JobStatus.SENT  # type: ignore[comparison-overlap]

            everything = acknowledged | {f"buffered-{n}" for n in range(10)} | {"given-up"}
            await run_until_recorded(bg, Path(path), everything, worker)
    finally:
        worker.stop()
        redis.stop()


async def test_jobs_a_dead_worker_took_are_delivered_again(tmp_path: Path) -> None:
    # What the outage above can leave behind, made certain: a consumer of the stream takes
    # acknowledged jobs and never runs them (a worker killed mid-read). Another worker runs
    # them once they sat idle for redeliver_after: none is lost.
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    queue = f"orphans-{secrets.token_hex(4)}"
    path = tmp_path / "ran.txt"
    worker: TaskiqProcess | None = None
    try:
        engine = redis_engine(redis.url, queue_name=queue)
        async with Backburner(engine=engine) as bg:  # its startup declares the consumer group
            held = {f"held-{n}" for n in range(5)}
            for token in sorted(held):
                await bg.aenqueue(record, str(path), token)
            broker = engine.broker
            assert isinstance(broker, RedisStreamBroker)
            async with Redis.from_url(redis.url) as client:
                taken = await client.xreadgroup(
                    broker.consumer_group_name, "dead-worker", {queue: ">"}, count=100
                )
            assert isinstance(taken, list)  # RESP2: [stream, messages] pairs
            assert sum(len(messages) for _, messages in taken) == len(held)

            env = {
                "BACKBURNER_TEST_QUEUE": queue,
                "BACKBURNER_TEST_REDELIVER": str(REDELIVER_AFTER),
            }
            worker = TaskiqProcess("worker", redis.url, tmp_path, ["--workers", "1"], env=env)
            await run_until_recorded(bg, path, held, worker)
    finally:
        if worker is not None:
            worker.stop()
        redis.stop()
