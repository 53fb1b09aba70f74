"""The taskiq engine's own contract: what it refuses at enqueue, what stats show, mixed mode."""

from __future__ import annotations

import datetime
import secrets
from typing import Any

import pytest
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SmartRetryMiddleware
from taskiq.task import AsyncTaskiqTask
from taskiq_redis import ListRedisScheduleSource, RedisStreamBroker

from backburner import (
    Backburner,
    BrokerUnavailable,
    ConcurrencyLimit,
    JobStatus,
    Periodic,
    QueueConfig,
    job,
)
from backburner.taskiq import TaskiqEngine, redis_engine

from ..processes import free_port
from .conftest import Remote
from .jobs import add, echo, flaky, stamp

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def not_registered(value: int) -> int:
    """A module-level function without @job: a worker could not find it by name."""
    return value


@job(name="remote.unique", unique="the-key")
async def unique_job() -> None:
    """A job with a unique key, which a remote engine cannot hold."""


@job(name="remote.limited", limits=[ConcurrencyLimit(1)])
async def limited_job() -> None:
    """A job with a ConcurrencyLimit, which this process's workers keep: not a remote's."""


def tenant_of(value: int) -> str:
    """A limit's key function that must never be called for a remote queue's job."""
    raise AssertionError("a remote queue refuses a limited job before its key is asked for")


@job(name="remote.keyed", limits=[ConcurrencyLimit(1, key=tenant_of)])
async def keyed_job(value: int) -> None:
    """A job whose one limit has a key function."""


def bare_engine(remote: Remote) -> TaskiqEngine:
    """An engine with neither a result backend nor a schedule source."""
    queue = f"bare-{secrets.token_hex(4)}"
    return TaskiqEngine(RedisStreamBroker(remote.redis.url, queue_name=queue))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda bg: bg.enqueue(lambda: 1), TypeError, "registered name"),
        (lambda bg: bg.enqueue(not_registered, 1), TypeError, "decorate it with @job"),
        (lambda bg: bg.enqueue(echo, (1, 2)), TypeError, "argument 1 of echo is a tuple"),
        (
            lambda bg: bg.enqueue(echo, when=datetime.datetime.now()),
            TypeError,
            "keyword argument 'when' of echo is a datetime",
        ),
        (lambda bg: bg.enqueue(echo, float("nan")), TypeError, "JSON has no such number"),
        (lambda bg: bg.enqueue(unique_job), ValueError, "unique= is not available"),
        (lambda bg: bg.enqueue(limited_job), ValueError, "limits and debounce are kept"),
        (lambda bg: bg.enqueue(keyed_job, 1), ValueError, "limits and debounce are kept"),
        (
            lambda bg: bg.options(retry_on=(KeyError,)).enqueue(add, 1, 2),
            ValueError,
            r"@job\(retry_on=",
        ),
    ],
    ids=[
        "lambda",
        "unregistered",
        "tuple",
        "datetime",
        "nan",
        "unique",
        "limited",
        "keyed",
        "retry_on",
    ],
)
async def test_what_the_engine_cannot_carry_is_refused_at_enqueue(
    remote: Remote, call: Any, error: type[Exception], message: str
) -> None:
    async with Backburner(engine=remote.engine()) as bg:
        with pytest.raises(error, match=message):
            call(bg)
        assert bg.stats().total.enqueued == 0  # nothing was accepted, nothing sent


async def test_aenqueue_refuses_the_same_before_sending(remote: Remote) -> None:
    async with Backburner(engine=remote.engine()) as bg:
        with pytest.raises(TypeError, match="argument 1 of echo is a tuple"):
            await bg.aenqueue(echo, (1,))
        with pytest.raises(ValueError, match="limits and debounce are kept"):
            await bg.aenqueue(keyed_job, 1)
        assert bg.stats().total.enqueued == 0


async def test_delays_and_retry_backoffs_need_a_schedule_source(remote: Remote) -> None:
    async with Backburner(engine=bare_engine(remote)) as bg:
        with pytest.raises(ValueError, match=r"needs a schedule source.*taskiq scheduler"):
            bg.enqueue_in(5, stamp)
        with pytest.raises(ValueError, match=r"retries=2 with a backoff.*backoff=0"):
            bg.enqueue(flaky, "token", 0)
        assert bg.stats().total.enqueued == 0


async def test_without_a_result_backend_awaiting_a_sent_job_says_so(remote: Remote) -> None:
    async with Backburner(engine=bare_engine(remote)) as bg:
        sent = await bg.aenqueue(add, 1, 2)
        assert sent.status is JobStatus.SENT
        with pytest.raises(RuntimeError, match="no result backend"):
            await sent
        with pytest.raises(RuntimeError, match="sent to taskiq RedisStreamBroker"):
            sent.result()


async def test_the_job_id_is_the_taskiq_task_id(remote: Remote) -> None:
    engine = remote.engine()
    async with Backburner(engine=engine) as bg:
        sent = await bg.aenqueue(add, 2, 2)
        assert await sent == 4
        stored = await engine.broker.result_backend.get_result(sent.id)
        assert stored.return_value == 4


async def test_a_delayed_job_whose_minute_passed_unseen_is_still_sent(remote: Remote) -> None:
    # The race behind a CI run that hung: a retry due at second 59 of a minute, added after
    # the scheduler's last look in that minute. The scheduler must find it among the past
    # minutes' schedules; taskiq-redis could not while the source's prefix held a colon.
    engine = remote.engine()
    assert engine.schedule_source is not None
    task_id = f"late-{secrets.token_hex(4)}"
    due = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=90)
    async with Backburner(engine=engine):  # opens the broker and the schedule source
        kicker: AsyncKicker[[int, int], int] = AsyncKicker(
            task_name="remote.add", broker=engine.broker, labels={}
        )
        await kicker.with_task_id(task_id).schedule_by_time(engine.schedule_source, due, 5, 6)
        task = AsyncTaskiqTask(task_id, engine.broker.result_backend)
        # The scheduler ticks each second; a lost job would never come.
        stored = await task.wait_result(check_interval=0.05, timeout=30)
        assert stored.return_value == 11


def test_a_schedule_prefix_with_a_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="queue_name 'app:jobs' holds a ':'"):
        redis_engine("redis://127.0.0.1:1/0", queue_name="app:jobs")
    source = ListRedisScheduleSource("redis://127.0.0.1:1/0", prefix="app:schedule")
    with pytest.raises(ValueError, match="prefix 'app:schedule' holds a ':'"):
        TaskiqEngine(RedisStreamBroker("redis://127.0.0.1:1/0"), schedule_source=source)


async def test_sync_enqueue_returns_pending_and_the_job_is_sent_soon_after(remote: Remote) -> None:
    async with Backburner(engine=remote.engine()) as bg:
        handle = bg.enqueue(add, 3, 4)
        assert handle.status is JobStatus.PENDING
        await bg.join()  # until every job was sent
        # mypy keeps its narrowing from the PENDING assertion above across the await.
        assert handle.status is JobStatus.SENT  # type: ignore[comparison-overlap]
        assert handle.done()  # this process's part is over
        assert await handle == 7


async def test_lookup_finds_a_sent_job_sent_then_as_it_ended_on_the_workers(
    remote: Remote,
) -> None:
    async with Backburner(engine=remote.engine()) as bg:
        handle = bg.enqueue(add, 3, 4)
        await bg.join()
        sent = await bg.lookup(handle.id)
        assert sent is not None
        assert (sent.status, sent.has_result) == (JobStatus.SENT, False)
        assert await handle == 7
        ended = await bg.lookup(handle.id)
        assert ended is not None
        assert (ended.status, ended.result) == (JobStatus.SUCCEEDED, 7)


async def test_stats_of_a_remote_queue_say_where_jobs_went_and_invent_nothing(
    remote: Remote,
) -> None:
    engine = remote.engine()
    async with Backburner(queues={"mail": QueueConfig(workers=2, engine=engine)}) as bg:
        assert await bg.enqueue(add, 1, 1) == 2  # the default queue runs it here
        await bg.options(queue="mail").aenqueue(add, 2, 2)
        bg.options(queue="mail").enqueue(add, 3, 3)
        await bg.join()
        stats = bg.stats()
    mail, default = stats.queues["mail"], stats.queues["default"]
    assert mail.engine == engine.name
    assert engine.name.startswith("taskiq RedisStreamBroker at")
    assert (mail.enqueued, mail.sent, mail.send_failed, mail.pending) == (2, 2, 0, 0)
    assert (mail.processed, mail.failed, mail.dead) == (0, 0, 0)  # known to the workers only
    assert (default.engine, default.processed) == ("local", 1)
    assert stats.as_dict()["queues"]["mail"]["sent"] == 2


async def test_a_job_waiting_to_be_sent_can_be_cancelled(remote: Remote) -> None:
    bg = Backburner(engine=remote.engine())
    await bg.open()  # accepting, not sending yet (an app's startup)
    try:
        handle = bg.enqueue(add, 1, 2)
        assert handle.cancel()
        assert handle.status is JobStatus.CANCELLED
        await bg.start()
        await bg.join()
        assert bg.stats().total.sent == 0
    finally:
        await bg.aclose()


async def test_a_journal_and_a_remote_engine_are_refused_together(remote: Remote) -> None:
    with pytest.raises(ValueError, match="do not mix"):
        Backburner(journal="jobs.sqlite3", engine=remote.engine())


def test_an_engine_must_be_an_engine() -> None:
    with pytest.raises(TypeError, match="TaskiqEngine"):
        QueueConfig(engine=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TaskiqEngine"):
        Backburner(engine="redis://localhost")  # type: ignore[arg-type]


def test_a_broker_with_its_own_retry_middleware_is_refused() -> None:
    broker = RedisStreamBroker("redis://127.0.0.1:1/0").with_middlewares(SmartRetryMiddleware())
    with pytest.raises(ValueError, match="already has a SmartRetryMiddleware"):
        TaskiqEngine(broker)


async def test_a_periodic_job_on_a_remote_queue_must_allow_overlap(remote: Remote) -> None:
    bg = Backburner(engine=remote.engine(), periodic=[Periodic(stamp, every=60)])
    with pytest.raises(ValueError, match="overlap=True"):
        await bg.start()


async def test_an_unreachable_broker_fails_the_start(remote: Remote) -> None:
    engine = redis_engine(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    bg = Backburner(engine=engine)
    with pytest.raises(BrokerUnavailable, match=r"cannot start taskiq RedisStreamBroker.*URL"):
        await bg.start()
    assert not bg.running


async def test_the_dashboard_shows_a_mixed_executor_and_refuses_to_pause_a_remote_queue(
    remote: Remote,
) -> None:
    import httpx

    from backburner.dashboard import dashboard

    auth = ("admin", "pw")
    engine = remote.engine()
    queues = {"mail": QueueConfig(workers=1, engine=engine)}
    async with Backburner(queues=queues) as bg:
        with pytest.raises(ValueError, match="sends its jobs to taskiq"):
            bg.pause("mail")
        assert "mail" not in bg.paused()
        sent = await bg.options(queue="mail").aenqueue(add, 1, 2)
        waiting = bg.options(queue="mail").enqueue(add, 3, 4)  # in the send buffer, or sent
        local = await bg.aenqueue(add, 5, 6)
        transport = httpx.ASGITransport(app=dashboard(bg, auth=auth), client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t", auth=auth) as c:
            for path in ("/", "/api/overview", "/pending", "/api/pending", "/busy", "/metrics"):
                response = await c.get(path)
                assert response.status_code == 200, (path, response.text[:300])
            for job in (sent, waiting, local):
                response = await c.get(f"/api/jobs/{job.id}")
                assert response.status_code in (200, 404), response.text[:300]
            overview = (await c.get("/api/overview")).text
            assert "mail" in overview
        assert await local == 11
