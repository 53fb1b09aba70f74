"""The loop-lag monitor names the job (or task) blocking the event loop, while it blocks.

A blocking job here blocks until the warning arrives (bounded), so "while it blocks" holds by
construction and no test depends on how fast the watchdog is; the one-second contract is checked
with the time the warning took, far under the bound on any machine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from backburner import Backburner, BackburnerMiddleware

from .logs import Watch, when_logged

pytestmark = pytest.mark.anyio

THRESHOLD = 0.1
BOUND = 10.0  # no block here lasts longer, whatever happens


def is_lag(record: logging.LogRecord) -> bool:
    return hasattr(record, "backburner_lag")


class Lag:
    """The lag monitor's records (kept by caplog); ``warned`` is set by the first warning."""

    def __init__(self, caplog: pytest.LogCaptureFixture, warned: Watch, resumed: Watch) -> None:
        self._caplog = caplog
        self._warned = warned
        self.warned = warned.seen
        self.resumed = resumed.seen

    @property
    def warned_at(self) -> float:
        """time.monotonic() of the first warning."""
        return self._warned.seen_at

    @property
    def records(self) -> list[logging.LogRecord]:
        return [r for r in self._caplog.records if is_lag(r)]

    @property
    def warnings(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == logging.WARNING]


@pytest.fixture
def lag(caplog: pytest.LogCaptureFixture) -> Iterator[Lag]:
    caplog.set_level(logging.INFO, "backburner")
    with (
        when_logged(lambda r: is_lag(r) and r.levelno == logging.WARNING) as warned,
        when_logged(lambda r: is_lag(r) and r.levelno != logging.WARNING) as resumed,
    ):
        yield Lag(caplog, warned, resumed)


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "backburner-lag-monitor"]


async def test_an_async_job_that_blocks_the_loop_is_named_while_it_blocks(
    lag: Lag,
) -> None:
    def hog_the_loop(label: str) -> tuple[bool, float]:
        began = time.monotonic()
        seen = lag.warned.wait(BOUND)  # blocks the loop's thread until the warning is out
        return seen, began

    async def hog(label: str) -> tuple[bool, float]:
        return hog_the_loop(label)

    async with Backburner(loop_lag_warning=THRESHOLD) as bg:
        job = bg.enqueue(hog, "thumbnails")
        seen, began = await job
    assert seen, "no warning while the loop was blocked"
    [record] = lag.warnings
    message = record.getMessage()
    assert job.id in message
    assert "hog('thumbnails')" in message
    assert "in hog_the_loop" in message  # where the loop's thread is
    assert record.backburner_job_id == job.id  # type: ignore[attr-defined]
    assert record.backburner_job_name == job.name  # type: ignore[attr-defined]
    assert record.backburner_lag > THRESHOLD  # type: ignore[attr-defined]
    assert lag.warned_at - began < 1.0  # the contract: named within a second


async def test_one_warning_per_block_then_one_line_when_the_loop_runs_again(
    lag: Lag,
) -> None:
    async def hog() -> None:
        assert lag.warned.wait(BOUND)
        time.sleep(4 * THRESHOLD)  # noqa: ASYNC251 - the block goes on, past more beats

    async with Backburner(loop_lag_warning=THRESHOLD) as bg:
        await bg.enqueue(hog)
        assert await anyio.to_thread.run_sync(lag.resumed.wait, BOUND)
    assert len(lag.warnings) == 1
    [resumed] = [r for r in lag.records if r.levelno == logging.INFO]
    assert "the event loop ran again after being blocked" in resumed.getMessage()
    assert resumed.backburner_lag > 4 * THRESHOLD  # type: ignore[attr-defined]


async def test_a_block_by_a_task_that_is_no_job_names_the_task(lag: Lag) -> None:
    async with Backburner(loop_lag_warning=THRESHOLD):
        assert lag.warned.wait(BOUND)  # this test's own task blocks the loop
    [record] = lag.warnings
    assert "not a job" in record.getMessage()
    assert "test_a_block_by_a_task_that_is_no_job_names_the_task" in record.getMessage()
    assert not hasattr(record, "backburner_job_id")


async def test_sync_jobs_in_threads_do_not_trip_the_monitor(lag: Lag) -> None:
    gate = threading.Event()

    def waits() -> None:
        gate.wait(BOUND)

    threshold = 0.5  # high enough that a busy machine's scheduling cannot reach it
    async with Backburner(loop_lag_warning=threshold, workers=2) as bg:
        jobs = [bg.enqueue(waits) for _ in range(2)]
        # Ten beats with both workers' threads blocked: the loop itself runs on.
        await anyio.sleep(10 * threshold / 4)
        gate.set()
        for job in jobs:
            await job
    assert not lag.warnings


async def test_the_monitor_is_off_by_default_and_its_thread_ends_with_the_executor() -> None:
    # An earlier test's monitor may still be on its way out (it ends within a beat, unjoined).
    before = set(monitor_threads())
    async with Backburner():
        assert not set(monitor_threads()) - before
    async with Backburner(loop_lag_warning=THRESHOLD):
        [thread] = set(monitor_threads()) - before
        assert thread.daemon
    thread.join(BOUND)
    assert not thread.is_alive()


def test_the_middleware_passes_the_setting_on() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    assert BackburnerMiddleware(app, loop_lag_warning=0.25).executor.loop_lag_warning == 0.25
    middleware = BackburnerMiddleware(app, loop_lag_warning=0)
    assert "loop_lag_warning must be" in str(middleware.config_error)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, r"at least 0.02"),
        (0.001, ValueError, r"at least 0.02"),
        (-1, ValueError, r"at least 0.02"),
        (float("nan"), ValueError, r"finite number of seconds"),
        (float("inf"), ValueError, r"finite number of seconds"),
        ("0.25", TypeError, r"must be a number of seconds \(or None: off\), got str"),
        (True, TypeError, r"got bool"),
    ],
)
def test_a_bad_threshold_is_refused_naming_the_setting(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Backburner(loop_lag_warning=value)  # type: ignore[arg-type]


async def test_a_huge_threshold_is_accepted_and_never_overflows_a_timer() -> None:
    before = set(monitor_threads())
    async with Backburner(loop_lag_warning=1e12) as bg:
        [thread] = set(monitor_threads()) - before
        assert await bg.enqueue(divmod, 7, 2) == (3, 1)
    thread.join(BOUND)
    assert not thread.is_alive()


async def test_a_job_blocking_the_loop_in_its_cleanup_at_shutdown_is_named(
    lag: Lag,
) -> None:
    started = asyncio.Event()

    async def cleans_up_blocking() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:  # cancelled by aclose(): this blocks the loop until the warning is out
            lag.warned.wait(BOUND)

    bg = Backburner(loop_lag_warning=THRESHOLD, shutdown_timeout=0.5, cancel_grace=0.4)
    await bg.start()
    job = bg.enqueue(cleans_up_blocking)
    await started.wait()
    report = await bg.aclose()
    assert lag.warned.is_set(), "no warning while the cleanup blocked the loop"
    [record] = lag.warnings
    assert job.id in record.getMessage()
    assert "cleans_up_blocking()" in record.getMessage()
    assert record.backburner_job_id == job.id  # type: ignore[attr-defined]
    assert report.unfinished == (job,)
