"""backburner.testing: inline and fake modes, and join()."""

from __future__ import annotations

import asyncio
import contextvars
import re
import subprocess
import sys
import threading
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from backburner import (
    Backburner,
    BackburnerMiddleware,
    Job,
    JobStatus,
    NotRunning,
    QueueConfig,
    background,
    job,
)
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


# Waiting across event loops: a TestClient runs the app, and so its executor, on an event loop
# in a thread of its own, while an async test awaits on the test's loop.


async def held(release: asyncio.Event) -> str:
    await release.wait()
    return "released"


def held_job_app(executor: Backburner) -> Starlette:
    """POST /hold enqueues a job that waits until the app's ``release`` event is set."""

    async def hold(request: Request) -> PlainTextResponse:
        request.app.state.release = asyncio.Event()  # made on the app's (the client's) loop
        job = background.enqueue(held, request.app.state.release)
        return PlainTextResponse(job.id)

    app = Starlette(routes=[Route("/hold", hold, methods=["POST"])])
    app.add_middleware(BackburnerMiddleware, executor=executor)
    return app


def _join_with(how: str, executor: Backburner) -> Coroutine[Any, Any, None]:
    if how == "testing.join(executor)":
        return bb_testing.join(executor)
    if how == "testing.join()":
        return bb_testing.join()
    if how == "executor.join()":
        return executor.join()
    return background.join()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "how", ["testing.join(executor)", "testing.join()", "executor.join()", "background.join()"]
)
async def test_join_from_the_tests_loop_waits_for_jobs_on_a_test_clients_loop(how: str) -> None:
    # Each run starts the wait while the job still runs (the job waits for the test's say-so),
    # which is when the wait used to hang: its future belonged to this loop but was woken from
    # the client's thread, which asyncio does not notice. fail_after turns a hang into a failure.
    for _ in range(20):
        executor = Backburner()
        app = held_job_app(executor)
        with TestClient(app) as client:
            job_id = client.post("/hold").text
            job = executor.find_job(job_id)
            assert job is not None
            assert executor.loop is not None
            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(_join_with, how, executor)
                    await anyio.lowlevel.checkpoint()  # the join above is now waiting
                    executor.loop.call_soon_threadsafe(app.state.release.set)
            assert job.status is JobStatus.SUCCEEDED


def test_join_from_a_sync_test_through_asyncio_run_waits_for_a_test_clients_jobs() -> None:
    executor = Backburner()
    app = held_job_app(executor)
    with TestClient(app) as client:
        job = executor.find_job(client.post("/hold").text)
        assert job is not None
        loop = executor.loop
        assert loop is not None

        async def join_then_release() -> None:
            with anyio.fail_after(10):  # a hang fails
                async with anyio.create_task_group() as group:
                    group.start_soon(bb_testing.join, executor)
                    await anyio.lowlevel.checkpoint()  # the join above is now waiting
                    loop.call_soon_threadsafe(app.state.release.set)

        asyncio.run(join_then_release())  # a loop of its own, in this thread
        assert job.status is JobStatus.SUCCEEDED


def test_join_refuses_at_once_when_the_executors_loop_is_not_running() -> None:
    loop = asyncio.new_event_loop()
    try:
        bg = Backburner()
        loop.run_until_complete(bg.start())
        job = bg.enqueue(send_welcome, "f@example.com")  # cannot start: the loop is stopped
        with pytest.raises(RuntimeError, match="executor's event loop is not running"):
            asyncio.run(bb_testing.join(bg))
        loop.run_until_complete(bg.join())  # on its own loop it works, and runs the job
        assert job.status is JobStatus.SUCCEEDED
        loop.run_until_complete(bg.aclose())
        asyncio.run(bb_testing.join(bg))  # closed: nothing left to wait for
    finally:
        loop.close()


def test_manual_clock_runs_each_due_call_on_its_loops_thread_whoever_advances_it() -> None:
    clock = bb_testing.ManualClock(start=0.0)
    ran_in: list[int] = []
    # A loop in a thread of its own, as a TestClient runs the app.
    with anyio.from_thread.start_blocking_portal() as portal:
        loop = portal.call(asyncio.get_running_loop)
        loop_thread = portal.call(threading.get_ident)
        clock.call_at(5.0, lambda: ran_in.append(threading.get_ident()), loop)
        clock.advance(4.0)
        assert ran_in == []
        clock.advance(1.0)  # returns once the call has run, there
        assert ran_in == [loop_thread]


@pytest.mark.anyio
async def test_manual_clock_drives_a_test_clients_delayed_jobs_from_the_tests_loop() -> None:
    clock = bb_testing.ManualClock()
    executor = Backburner(clock=clock)

    async def later(request: Request) -> PlainTextResponse:
        return PlainTextResponse(background.enqueue_in(60, resize, "later.png").id)

    app = Starlette(routes=[Route("/later", later, methods=["POST"])])
    app.add_middleware(BackburnerMiddleware, executor=executor)
    with TestClient(app) as client:
        job = executor.find_job(client.post("/later").text)
        assert job is not None
        clock.advance(59)
        await bb_testing.join(executor)
        assert [job.status] == [JobStatus.SCHEDULED]
        clock.advance(1)
        await bb_testing.join(executor)
        assert [job.status] == [JobStatus.SUCCEEDED]
    assert sent == ["later.png"]


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


# The tutorial's test files, run by pytest as they are written, beside the tutorial's app.py.

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tutorial"
TITLED_BLOCK = re.compile(r'```python title="([\w.]+)"\n(.*?)```', flags=re.DOTALL)


def tutorial_files() -> dict[str, str]:
    """The blocks with a file name (``python title="app.py"``) of the tutorial's pages."""
    files: dict[str, str] = {}
    for page in sorted(DOCS.glob("*.md")):
        for name, source in TITLED_BLOCK.findall(page.read_text(encoding="utf-8")):
            assert name not in files, f"two blocks of the tutorial are named {name}"
            files[name] = source
    return files


def test_the_tutorials_test_files_pass_as_written(tmp_path: Path) -> None:
    files = tutorial_files()
    tests = sorted(name for name in files if name.startswith("test_"))
    assert "app.py" in files, sorted(files)
    assert len(tests) >= 3, tests
    for name, source in files.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    # Its own pytest run, strict like ours; a hang ends it through pytest-timeout. The
    # fixtures come from the package's plugin, as they do for a user who installed it.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\ntimeout = 60\n"
        "addopts = -p no:cacheprovider -p no:randomly -p no:backburner "
        "-p backburner.pytest_plugin --strict-markers\n",
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *tests],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout, run.stdout


@job(queue="mail")
def send_mail(to: str) -> str:
    return to


def test_fake_records_jobs_for_any_queue_where_no_executor_runs() -> None:
    with bb_testing.fake() as recorded:
        background.enqueue(send_mail, "ada@example.com")
    assert [(job.queue, job.args) for job in recorded] == [("mail", ("ada@example.com",))]


def test_background_enqueue_is_there_to_look_at_where_no_executor_runs() -> None:
    assert callable(background.enqueue)  # found only when called (and then refused)
    with pytest.raises(NotRunning):
        background.enqueue(send_mail, "ada@example.com")


def failing() -> None:
    raise KeyError("the job's own error")


@pytest.mark.anyio
async def test_inline_contains_an_on_error_hook_that_raises() -> None:
    def hook(job: Job[Any], exc: BaseException) -> None:
        raise RuntimeError("the hook's error")

    async with Backburner(on_error=hook) as bg:
        with bb_testing.inline(raise_errors=False):
            assert bg.enqueue(failing).status is JobStatus.FAILED
