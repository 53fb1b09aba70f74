"""backburner.testing: inline and fake modes, and join()."""

from __future__ import annotations

import asyncio
import contextvars
import traceback

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from backburner import Backburner, BackburnerMiddleware, JobStatus, QueueConfig, background
from backburner import testing as bb_testing

sent: list[str] = []
user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="-")


async def send_welcome(address: str) -> str:
    await asyncio.sleep(0)
    sent.append(address)
    return f"sent to {address} as {user.get()}"


def resize(path: str) -> str:
    sent.append(path)
    return path.upper()


async def broken() -> None:
    raise ConnectionError("smtp down")


@pytest.fixture(autouse=True)
def clear_sent() -> None:
    sent.clear()


def signup_app() -> Starlette:
    async def signup(request: Request) -> PlainTextResponse:
        job = background.enqueue(send_welcome, request.query_params["email"])
        return PlainTextResponse(job.id)

    app = Starlette(routes=[Route("/signup", signup, methods=["POST"])])
    app.add_middleware(BackburnerMiddleware)
    return app


def test_inline_runs_an_async_job_from_an_async_endpoint_before_the_response() -> None:
    with bb_testing.inline() as ran, TestClient(signup_app()) as client:
        client.post("/signup", params={"email": "a@example.com"})
        assert sent == ["a@example.com"]  # no waiting: it ran inside enqueue
    assert [job.status for job in ran] == [JobStatus.SUCCEEDED]


def test_inline_works_without_any_running_executor() -> None:
    with bb_testing.inline():
        user.set("ada")
        job = background.enqueue(send_welcome, "b@example.com")
        sync_job = background.enqueue(resize, "cat.png")
    assert job.result() == "sent to b@example.com as ada"
    assert sync_job.result() == "CAT.PNG"


def test_inline_raises_a_failing_jobs_exception_at_enqueue_by_default() -> None:
    with bb_testing.inline(), pytest.raises(ConnectionError, match="smtp down"):
        background.enqueue(broken)


def test_inline_can_keep_failures_on_the_job_instead() -> None:
    with bb_testing.inline(raise_errors=False):
        job = background.enqueue(broken)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.exception(), ConnectionError)


def test_fake_records_jobs_without_running_them_and_can_run_them_later() -> None:
    with bb_testing.fake() as jobs, TestClient(signup_app()) as client:
        client.post("/signup", params={"email": "c@example.com"})
        client.post("/signup", params={"email": "d@example.com"})
        assert sent == []
        addresses = [job.args for job in jobs.of(send_welcome)]
        assert addresses == [("c@example.com",), ("d@example.com",)]
        assert all(job.status is JobStatus.PENDING for job in jobs)
        jobs.run_all()
    assert sent == ["c@example.com", "d@example.com"]


def test_fake_still_refuses_calls_that_would_fail_for_real() -> None:
    with bb_testing.fake() as jobs:
        with pytest.raises(TypeError, match="missing a required argument"):
            background.enqueue(send_welcome)  # type: ignore[call-overload]
        assert len(jobs) == 0


def test_fake_refuses_unknown_queues_of_a_known_executor() -> None:
    bg = Backburner(queues={"mail": QueueConfig()})
    with bb_testing.fake(), pytest.raises(ValueError, match="no queue named 'mial'"):
        bg.options(queue="mial").enqueue(resize, "x")


def test_a_recorded_job_can_be_cancelled_and_is_then_not_run() -> None:
    with bb_testing.fake() as jobs:
        job = background.enqueue(resize, "x")
        assert job.cancel()
        assert jobs.run_all() == []
    assert sent == []


def test_modes_nest_and_the_innermost_wins() -> None:
    with bb_testing.fake() as outer:
        with bb_testing.inline():
            background.enqueue(resize, "inner")
        background.enqueue(resize, "outer")
    assert sent == ["inner"]
    assert [job.args for job in outer] == [("outer",)]


@pytest.mark.anyio
async def test_join_waits_for_the_current_executors_jobs() -> None:
    async with Backburner() as bg:
        for n in range(5):
            bg.enqueue(send_welcome, str(n))
        await bb_testing.join(bg)
        assert sorted(sent) == ["0", "1", "2", "3", "4"]


@pytest.mark.anyio
async def test_inline_runs_an_async_job_called_from_a_running_loop() -> None:
    with bb_testing.inline():
        user.set("grace")
        job = background.enqueue(send_welcome, "e@example.com")
    assert job.result() == "sent to e@example.com as grace"


# inline() and the traceback of a failing async job.


def test_inline_shows_a_failing_async_jobs_own_error_first_from_a_sync_endpoint() -> None:
    def signup_sync(request: Request) -> PlainTextResponse:  # runs in a thread with no loop
        return PlainTextResponse(background.enqueue(broken).id)

    app = Starlette(routes=[Route("/signup", signup_sync, methods=["POST"])])
    app.add_middleware(BackburnerMiddleware)
    with (
        bb_testing.inline(),
        TestClient(app) as client,
        pytest.raises(ConnectionError, match="smtp down") as caught,
    ):
        client.post("/signup")
    chain = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert [type(error) for error in chain] == [ConnectionError]
    text = "".join(traceback.format_exception(caught.value))
    assert text.startswith("Traceback")
    assert "no running event loop" not in text
