"""One suite of job behaviour, run on the in-process engine and on taskiq over Redis.

Arguments, results, failures, retries, delays and timeouts must behave the same whichever
engine runs the job: the call site does not change, and neither does what ``await job`` gives.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from backburner import JobStatus

from .jobs import add, echo, fail, flaky, slow, stamp

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Executor = Any  # the `executor` fixture: async with executor() as bg


async def test_an_async_job_returns_its_value(executor: Executor) -> None:
    async with executor() as bg:
        job = bg.enqueue(add, 2, 3)
        assert await job == 5
        assert job.status is JobStatus.SUCCEEDED


async def test_positional_and_keyword_json_arguments_arrive_intact(executor: Executor) -> None:
    nested = {"list": [1, 2.5, None, True], "text": "é ☃", "deep": {"a": [{"b": []}]}}
    async with executor() as bg:
        job = bg.enqueue(echo, 1, "two", [3], flag=False, data=nested)
        assert await job == {
            "args": [1, "two", [3]],
            "kwargs": {"flag": False, "data": nested},
        }


async def test_aenqueue_returns_a_handle_whose_result_can_be_awaited(executor: Executor) -> None:
    async with executor() as bg:
        job = await bg.aenqueue(add, 20, 22)
        assert await job == 42


async def test_a_failing_job_raises_its_exception_when_awaited(executor: Executor) -> None:
    async with executor() as bg:
        job = bg.enqueue(fail, "no luck")
        with pytest.raises(ValueError, match="no luck"):
            await job
        assert job.status is JobStatus.FAILED
        assert isinstance(job.exception(), ValueError)


async def test_a_job_is_retried_until_it_succeeds(executor: Executor) -> None:
    token = secrets.token_hex(4)
    async with executor() as bg:
        job = bg.enqueue(flaky, token, 2)  # fails twice; @job(retries=2)
        assert await job == 3
        assert job.attempt == 3


async def test_a_job_that_fails_every_attempt_is_dead(executor: Executor) -> None:
    token = secrets.token_hex(4)
    async with executor() as bg:
        job = bg.enqueue(flaky, token, 5)  # fails more often than its retries allow
        with pytest.raises(RuntimeError, match="attempt 3 of"):
            await job
        assert job.status is JobStatus.DEAD
        assert job.attempt == 3


async def test_a_delayed_job_runs_no_sooner_than_asked(executor: Executor) -> None:
    async with executor() as bg:
        asked = time.time()
        job = bg.enqueue_in(1.0, stamp)
        ran = await job
        # Never early; late by the scheduler's tick (a second) and its schedule update (one
        # more), under load up to 4 s in benchmarks of 1,400 delays. A job a minute late, or
        # never sent, was the colon-prefix bug that _check_schedule_prefix now refuses.
        assert asked + 1.0 <= ran < asked + 30.0


async def test_a_job_past_its_timeout_fails_with_a_timeout_error(executor: Executor) -> None:
    async with executor() as bg:
        job = bg.enqueue(slow, 30.0)  # @job(timeout=0.2)
        with pytest.raises(TimeoutError):
            await job
