"""Log records carry their job: ``JobContextFilter``, the structlog processor, ``log_args=False``,
and the handler added when nothing else would write backburner's records."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import logging.handlers
import queue
import re
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from backburner import (
    Backburner,
    ConcurrencyLimit,
    Job,
    JobStatus,
    NotInJob,
    QueueConfig,
    current_job,
)
from backburner import job as as_job
from backburner.logs import FIELDS, JobContextFilter, add_job_context, install_fallback
from backburner.testing import ManualClock

from .jobs import time_out_first_attempt

pytestmark = pytest.mark.anyio

app_log = logging.getLogger("tests.app")


class Records(logging.Handler):
    """Keeps the records it handles, after its filters ran."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def by_message(self, message: str) -> logging.LogRecord:
        [found] = [r for r in self.records if r.getMessage() == message]
        return found


@pytest.fixture
def records() -> Iterator[Records]:
    """A handler with a ``JobContextFilter`` on the app's logger and backburner's."""
    handler = Records()
    handler.addFilter(JobContextFilter())
    loggers = [app_log, logging.getLogger("backburner")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS}


async def logs_async(n: int) -> None:
    await asyncio.sleep(0)  # the record comes from the job's task after it was suspended
    app_log.info("async %d", n)


def logs_sync(n: int) -> None:
    app_log.info("sync %d", n)


async def test_a_record_from_an_async_job_carries_the_job(records: Records) -> None:
    async with Backburner(queues={"mail": QueueConfig(workers=2)}) as bg:
        job = bg.options(queue="mail").enqueue(logs_async, 1)
        await job
    assert fields(records.by_message("async 1")) == {
        "job_id": job.id,
        "job_name": "logs_async",
        "queue": "mail",
        "attempt": 1,
        "trace_id": "-",
    }


async def test_a_record_from_a_sync_job_carries_the_job_on_its_thread(records: Records) -> None:
    async with Backburner() as bg:
        job = bg.enqueue(logs_sync, 2)
        await job
    record = records.by_message("sync 2")
    assert (record.threadName or "").startswith("backburner-")  # logged on the job's own thread
    assert fields(record)["job_id"] == job.id
    assert fields(record)["job_name"] == "logs_sync"


async def test_concurrent_jobs_each_carry_their_own_id(records: Records) -> None:
    async with Backburner(workers=8) as bg:
        jobs = [bg.enqueue(logs_async, n) for n in range(8)]
        jobs += [bg.enqueue(logs_sync, n) for n in range(8)]
        await bg.join()
    for n in range(8):
        assert records.by_message(f"async {n}").job_id == jobs[n].id  # type: ignore[attr-defined]
        assert records.by_message(f"sync {n}").job_id == jobs[8 + n].id  # type: ignore[attr-defined]


async def child_logs() -> None:
    app_log.info("child")


def parent_logs(bg: Backburner, children: list[Any]) -> None:
    app_log.info("parent")
    children.append(bg.enqueue(child_logs))  # its context is a copy of this thread's


async def test_a_job_enqueued_from_a_sync_job_carries_its_own_id_not_its_parents(
    records: Records,
) -> None:
    children: list[Any] = []
    async with Backburner() as bg:
        parent = bg.enqueue(parent_logs, bg, children)
        await parent
        await children[0]
    assert records.by_message("parent").job_id == parent.id  # type: ignore[attr-defined]
    assert records.by_message("child").job_id == children[0].id  # type: ignore[attr-defined]


async def test_tasks_and_threads_an_async_job_starts_carry_the_job(records: Records) -> None:
    async def child(how: str) -> None:
        await asyncio.sleep(0)
        app_log.info("child %s", how)

    async def fans_out() -> None:
        await asyncio.gather(child("gather"))
        await asyncio.create_task(child("create_task"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(child, "task group")
        await asyncio.to_thread(app_log.info, "child to_thread")
        await anyio.to_thread.run_sync(app_log.info, "child anyio thread")

    async with Backburner() as bg:
        job = bg.enqueue(fans_out)
        await job
    hows = ("gather", "create_task", "task group", "to_thread", "anyio thread")
    for how in hows:
        assert fields(records.by_message(f"child {how}"))["job_id"] == job.id, how


async def test_a_filter_on_a_queue_handler_carries_the_job_to_the_listener_thread() -> None:
    # As the docs say: on the QueueHandler (where the record is made), not behind the listener.
    records = Records()
    log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(log_queue)
    queue_handler.addFilter(JobContextFilter())
    listener = logging.handlers.QueueListener(log_queue, records)
    app_log.addHandler(queue_handler)
    app_log.setLevel(logging.INFO)
    listener.start()
    try:
        async with Backburner() as bg:
            job = bg.enqueue(logs_async, 4)
            await job
    finally:
        app_log.removeHandler(queue_handler)
        app_log.setLevel(logging.NOTSET)
        listener.stop()  # writes what the queue still holds, then joins its thread
    assert records.by_message("async 4").job_id == job.id  # type: ignore[attr-defined]


class Marker:
    """An argument to watch: freed when the job holding it is."""


async def takes_marker(marker: Marker) -> None:
    app_log.info("holding the marker")


async def test_a_finished_job_is_freed_without_the_garbage_collector() -> None:
    # The job in its context must make no cycle (task -> context -> job -> task): at 50,000
    # jobs a second, leaving them to the GC cost 40% of the throughput. (Kept results would
    # hold the job, arguments included, for lookup: none are kept here.)
    async with Backburner(keep_results=0) as bg:
        gc.disable()
        try:
            marker = Marker()
            freed = weakref.ref(marker)
            job = bg.enqueue(takes_marker, marker)
            await job
            del job, marker
            assert freed() is None
        finally:
            gc.enable()


async def test_a_follow_up_job_carries_its_own_id_and_the_enqueuer_none(
    records: Records,
) -> None:
    follow_ups: list[Job[None]] = []

    async def first() -> None:
        follow_ups.append(bg.enqueue(logs_async, 3))
        app_log.info("first")

    async with Backburner() as bg:
        job = bg.enqueue(first)
        await bg.join()
        app_log.info("enqueuer")
    assert records.by_message("first").job_id == job.id  # type: ignore[attr-defined]
    assert records.by_message("async 3").job_id == follow_ups[0].id  # type: ignore[attr-defined]
    assert records.by_message("enqueuer").job_id == "-"  # type: ignore[attr-defined]


@pytest.mark.parametrize("limited", [False, True], ids=["plain", "one-concurrency-limit"])
async def test_a_task_of_a_failed_attempt_that_outlives_it_never_speaks_as_the_retry(
    records: Records, limited: bool
) -> None:
    # An async job's task left running by its first attempt (a heartbeat never cancelled)
    # logs while the retry runs: its records are the first attempt's, and current_job() in
    # it is refused, as in the thread of a timed-out sync job.
    leftover_may_log, leftover_done = asyncio.Event(), asyncio.Event()
    retry_running, retry_may_end = asyncio.Event(), asyncio.Event()
    seen: list[object] = []
    leftovers: list[asyncio.Task[None]] = []

    async def leftover() -> None:
        await leftover_may_log.wait()
        app_log.info("leftover")
        try:
            seen.append(current_job().attempt)
        except NotInJob:
            seen.append("not in job")
        leftover_done.set()

    async def flaky() -> None:
        if current_job().attempt == 1:
            leftovers.append(asyncio.create_task(leftover()))
            raise ValueError("first try fails")
        retry_running.set()
        await retry_may_end.wait()

    limits = [ConcurrencyLimit(1)] if limited else []
    work = as_job(limits=limits, retries=1, backoff=1, jitter=0)(flaky)
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        handle = bg.enqueue(work)
        await bg.join()
        clock.advance(1)
        await retry_running.wait()
        leftover_may_log.set()
        await leftover_done.wait()
        retry_may_end.set()
        await handle
    assert records.by_message("leftover").attempt == 1  # type: ignore[attr-defined]
    assert seen == ["not in job"]


async def test_a_retry_carries_its_attempt_and_backburner_own_lines_carry_the_job(
    records: Records,
) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        app_log.info("attempt of flaky")
        if calls == 1:
            raise ValueError("first try fails")

    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        job = bg.options(retries=1, backoff=1, jitter=0).enqueue(flaky)
        await bg.join()  # the first attempt failed; the retry waits for the clock
        assert job.status is JobStatus.RETRYING
        clock.advance(1)
        await job
    attempts = [r for r in records.records if r.getMessage() == "attempt of flaky"]
    assert [r.attempt for r in attempts] == [1, 2]  # type: ignore[attr-defined]
    [retry_line] = [r for r in records.records if "retrying in" in r.getMessage()]
    assert retry_line.job_id == job.id  # type: ignore[attr-defined]


async def test_a_timed_out_attempts_thread_still_logs_as_that_attempt(records: Records) -> None:
    clock = ManualClock()
    started, release, logged = threading.Event(), threading.Event(), threading.Event()
    calls = 0

    def first_hangs() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            release.wait(30)
            app_log.info("late line of the first attempt")
            logged.set()
        else:
            app_log.info("the second attempt")

    async with Backburner(workers=2, clock=clock) as bg:
        job = bg.options(timeout=1, retries=1, backoff=1, jitter=0).enqueue(first_hangs)
        await time_out_first_attempt(clock, started)  # its thread runs on
        clock.advance(1)
        try:
            await job
        finally:
            release.set()
        await anyio.to_thread.run_sync(logged.wait, 10)
    assert records.by_message("the second attempt").attempt == 2  # type: ignore[attr-defined]
    late = records.by_message("late line of the first attempt")
    assert late.attempt == 1  # type: ignore[attr-defined]


async def test_outside_a_job_the_attributes_exist_and_a_format_naming_them_works() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter("[%(job_id)s %(queue)s %(trace_id)s] %(message)s"))
    app_log.addHandler(handler)
    try:
        app_log.warning("not in a job")
    finally:
        app_log.removeHandler(handler)
    assert stream.getvalue() == "[- - -] not in a job\n"


def test_the_default_outside_a_job_can_be_none_and_extra_wins() -> None:
    record = logging.makeLogRecord({"msg": "x", "queue": "given"})
    assert JobContextFilter(default=None).filter(record)
    assert fields(record) == {
        "job_id": None,
        "job_name": None,
        "queue": "given",
        "attempt": None,
        "trace_id": None,
    }


async def test_the_trace_id_is_the_current_opentelemetry_span(records: Records) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("tests")
    async with Backburner() as bg:
        with tracer.start_as_current_span("request") as span:
            job = bg.enqueue(logs_async, 3)  # the job runs in a copy of this context
        await job
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert records.by_message("async 3").trace_id == trace_id  # type: ignore[attr-defined]


async def test_the_structlog_processor_adds_the_job_to_the_event_dict() -> None:
    structlog = pytest.importorskip("structlog")
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(
        None,
        processors=[structlog.contextvars.merge_contextvars, add_job_context, capture],
        wrapper_class=structlog.BoundLogger,
    )

    async def async_job() -> None:
        log.info("from async")

    def sync_job() -> None:
        log.info("from sync")

    async with Backburner() as bg:
        jobs = [bg.enqueue(async_job), bg.enqueue(sync_job)]
        await bg.join()
    log.info("outside")
    by_event = {entry["event"]: entry for entry in capture.entries}
    for event, job in zip(("from async", "from sync"), jobs, strict=True):
        entry = by_event[event]
        assert (entry["job_id"], entry["queue"], entry["attempt"]) == (job.id, "default", 1)
        assert entry["job_name"] == job.name
    assert "job_id" not in by_event["outside"]


@as_job(log_args=False, retries=1, backoff=0.01, jitter=0)
async def charge_card(card_number: str) -> None:
    raise ValueError("declined")


@as_job(retries=1, backoff=0.01, jitter=0)
async def charge_card_loudly(card_number: str) -> None:
    raise ValueError("declined")


async def test_log_args_false_keeps_the_arguments_out_of_failure_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "backburner")
    async with Backburner() as bg:
        quiet = bg.enqueue(charge_card, "4111-1111-1111-1111")
        loud = bg.enqueue(charge_card_loudly, "5500-0000-0000-0004")
        await quiet.wait()
        await loud.wait()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "4111" not in text
    assert f"{quiet.id} charge_card(...)" in text  # in the retry line and the dead one
    assert "5500-0000-0000-0004" in text  # a job that did not ask keeps its arguments shown


async def refund(amount: int) -> None:
    raise ValueError("declined")


async def test_an_int_argument_too_long_for_decimal_is_named_in_the_failure_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # reprlib lets int's ValueError (sys.get_int_max_str_digits) out: the failure's log line,
    # and a shutdown report, raised instead of being written.
    caplog.set_level(logging.INFO, "backburner")
    async with Backburner() as bg:
        job = bg.enqueue(refund, 10**5000)
        await job.wait()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{job.id} refund(<int of 16,610 bits: too long to show>)" in text


async def test_log_args_false_keeps_the_arguments_out_of_the_shutdown_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @as_job(log_args=False)
    async def secret(token: str) -> None:
        await asyncio.sleep(3600)

    bg = Backburner(workers=1, shutdown_timeout=0.2)
    await bg.start()
    bg.enqueue(secret, "s3cr3t-token")
    bg.enqueue(secret, "s3cr3t-token")
    await asyncio.sleep(0)
    report = await bg.aclose()
    assert len(report.unfinished) == 2
    [record] = [r for r in caplog.records if hasattr(r, "backburner_unfinished")]
    assert "s3cr3t" not in record.getMessage()
    assert "secret(...)" in record.getMessage()


async def test_the_shutdown_report_has_its_facts_as_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bg = Backburner(workers=1, shutdown_timeout=0.2)
    await bg.start()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    running, waiting = bg.enqueue(forever), bg.enqueue(forever)
    await started.wait()
    await bg.aclose()
    [record] = [r for r in caplog.records if hasattr(r, "backburner_unfinished")]
    extra: dict[str, Any] = record.__dict__
    assert extra["backburner_counts"] == {
        "abandoned": 0,
        "cancelled": 1,
        "not_started": 1,
        "scheduled": 0,
    }
    assert extra["backburner_shutdown_timeout"] == 0.2
    assert extra["backburner_elapsed"] >= 0
    assert extra["backburner_journal"] is None
    kinds = {entry["id"]: entry["kind"] for entry in extra["backburner_unfinished"]}
    assert kinds == {running.id: "cancelled", waiting.id: "not_started"}


def test_the_fallback_handler_is_not_added_when_logging_is_configured() -> None:
    # pytest's own capture handler is on the root logger here: logging is configured.
    assert logging.root.handlers
    assert not install_fallback()
    assert not logging.getLogger("backburner").handlers


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (no logging configured, as under a bare uvicorn);
    its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr


def test_the_fallback_handler_steps_aside_when_logging_is_configured_later() -> None:
    err = run_python(
        """
        import logging
        from backburner.logs import install_fallback

        log = logging.getLogger("backburner")
        assert install_fallback()
        assert not install_fallback()  # once is enough
        log.info("before")
        own = logging.StreamHandler()
        own.setFormatter(logging.Formatter("own %(levelname)s %(message)s"))
        log.addHandler(own)
        log.warning("own handler")
        log.removeHandler(own)
        logging.basicConfig(format="configured %(levelname)s %(message)s")
        log.warning("after")
        """
    )
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert re.fullmatch(r"INFO: +\d{4}-\d\d-\d\d [\d:,]+ backburner: before", lines[0]), err
    assert lines[1:] == ["own WARNING own handler", "configured WARNING after"]  # once each


def test_a_null_handler_on_the_logger_turns_the_fallback_off() -> None:
    err = run_python(
        """
        import logging
        from backburner.logs import install_fallback

        logging.getLogger("backburner").addHandler(logging.NullHandler())
        assert not install_fallback()
        logging.getLogger("backburner").warning("silenced")
        """
    )
    assert err == ""


def test_levels_set_by_logging_configured_later_hold_for_backburner_lines() -> None:
    # The fallback let INFO through on its own; configured later, the root's level rules.
    err = run_python(
        """
        import logging
        from backburner.logs import install_fallback

        log = logging.getLogger("backburner")
        assert install_fallback()
        log.info("fallback info")
        logging.basicConfig(level=logging.WARNING, format="configured %(levelname)s %(message)s")
        log.info("hidden: the root says WARNING")
        log.warning("shown")
        logging.getLogger().setLevel(logging.DEBUG)
        log.debug("debug now")
        """
    )
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert lines[0].endswith("backburner: fallback info"), err
    assert lines[1:] == ["configured WARNING shown", "configured DEBUG debug now"], err


def test_an_app_that_configures_logging_in_its_lifespan_sets_backburner_level() -> None:
    # The middleware adds the fallback before the app's startup; the app then says WARNING.
    err = run_python(
        """
        import contextlib, logging
        from starlette.applications import Starlette
        from starlette.testclient import TestClient
        from backburner import BackburnerMiddleware

        @contextlib.asynccontextmanager
        async def lifespan(app):
            logging.basicConfig(level=logging.WARNING, format="app %(levelname)s %(message)s")
            yield

        with TestClient(BackburnerMiddleware(Starlette(lifespan=lifespan))):
            logging.getLogger("backburner").warning("running")
        """
    )
    assert err.splitlines() == ["app WARNING running"], err  # no INFO "started", once each


def test_a_dict_config_naming_the_backburner_logger_takes_it_over_level_included() -> None:
    # dictConfig removes the fallback from the logger it configures; its level is the config's.
    err = run_python(
        """
        import logging, logging.config
        from backburner.logs import install_fallback

        log = logging.getLogger("backburner")
        assert install_fallback()
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "config %(levelname)s %(message)s"}},
            "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "loggers": {"backburner": {"handlers": ["h"]}},
        })
        log.info("hidden: no level configured, the root's WARNING holds")
        log.warning("shown")
        """
    )
    assert err.splitlines() == ["config WARNING shown"], err


def test_the_users_filters_on_the_logger_still_run_when_the_level_is_given_back() -> None:
    err = run_python(
        """
        import logging
        from backburner.logs import install_fallback

        log = logging.getLogger("backburner")
        assert install_fallback()

        def redact(record):
            record.msg = record.msg.replace("s3cret", "***")
            return True

        log.addFilter(redact)
        logging.basicConfig(format="configured %(levelname)s %(message)s")
        log.warning("token s3cret")  # the first record after configuring: the level goes back
        """
    )
    assert err.splitlines() == ["configured WARNING token ***"], err
