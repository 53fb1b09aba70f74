"""BackburnerMiddleware: the lifespan protocol in every path, and requests that enqueue."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from backburner import (
    Backburner,
    BackburnerMiddleware,
    NotRunning,
    QueueFull,
    background,
    queue_full_handler,
)
from backburner.fastapi import BackburnerDep, get_backburner

pytestmark = pytest.mark.anyio

events: list[str] = []
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Server:
    """Plays uvicorn's side of the lifespan protocol and records what the app sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self._got = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self.inbox.get()

    async def _send(self, message: Message) -> None:
        self.sent.append(message)
        self._got.set()

    async def _next(self) -> Message:
        count = len(self.sent)
        while len(self.sent) == count:
            self._got.clear()
            await self._got.wait()
        return self.sent[-1]

    async def startup(self) -> Message:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self._receive, self._send))
        await self.inbox.put({"type": "lifespan.startup"})
        return await self._next()

    async def shutdown(self) -> Message:
        await self.inbox.put({"type": "lifespan.shutdown"})
        return await self._next()

    async def finished(self) -> list[str]:
        assert self.task is not None
        await self.task
        return [message["type"] for message in self.sent]


def starlette_app(
    *, startup_fails: bool = False, executor: Backburner | None = None
) -> tuple[Starlette, Backburner]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("app startup")
        if startup_fails:
            raise RuntimeError("database unreachable")
        background.enqueue(record, "job from startup")
        yield
        events.append("app shutdown")

    app = Starlette(lifespan=lifespan)
    executor = executor or Backburner()
    app.add_middleware(BackburnerMiddleware, executor=executor)
    return app, executor


async def record(event: str) -> None:
    events.append(event)


@pytest.fixture(autouse=True)
def clear_events() -> None:
    events.clear()


async def test_with_a_lifespan_app_jobs_start_after_its_startup_and_drain_before_its_shutdown() -> (
    None
):
    app, executor = starlette_app()
    server = Server(app)
    assert (await server.startup())["type"] == "lifespan.startup.complete"
    await executor.join()
    background_job_ran = events.index("job from startup")
    assert events.index("app startup") < background_job_ran
    gate = asyncio.Event()
    executor.enqueue(gate.wait)

    async def release_later() -> None:
        await anyio.wait_all_tasks_blocked()
        events.append("last job finishing")
        gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_later)
        assert (await server.shutdown())["type"] == "lifespan.shutdown.complete"
    assert events[-2:] == ["last job finishing", "app shutdown"]
    assert await server.finished() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_an_app_failing_its_startup_gets_one_startup_failed_and_its_jobs_reported() -> None:
    app, executor = starlette_app(startup_fails=True)
    server = Server(app)
    message = await server.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "database unreachable" in message["message"]
    assert await server.finished() == ["lifespan.startup.failed"]
    assert not executor.running


async def test_a_bad_setting_fails_startup_with_a_message_naming_it() -> None:
    app = Starlette()
    app.add_middleware(BackburnerMiddleware, workers=0)
    server = Server(app)
    message = await server.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "workers must be at least 1" in message["message"]
    assert await server.finished() == ["lifespan.startup.failed"]


async def raises_on_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("I only speak HTTP")
    await PlainTextResponse(str(background.enqueue(record, "from request").id))(
        scope, receive, send
    )


async def returns_on_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "lifespan":
        await PlainTextResponse("ok")(scope, receive, send)


@pytest.mark.parametrize("inner", [raises_on_lifespan, returns_on_lifespan])
async def test_an_app_without_lifespan_support_still_gets_a_running_executor(inner: Any) -> None:
    middleware = BackburnerMiddleware(inner)
    server = Server(middleware)
    assert (await server.startup())["type"] == "lifespan.startup.complete"
    assert middleware.executor.running
    job = middleware.executor.enqueue(record, "ran")
    await job
    assert (await server.shutdown())["type"] == "lifespan.shutdown.complete"
    assert await server.finished() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_an_app_whose_lifespan_crashes_after_startup_still_drains_and_reports() -> None:
    crash = asyncio.Event()

    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await crash.wait()
        raise RuntimeError("lifespan task died")

    middleware = BackburnerMiddleware(crashing)
    server = Server(middleware)
    assert (await server.startup())["type"] == "lifespan.startup.complete"
    done = middleware.executor.enqueue(record, "still runs")
    crash.set()
    await done
    message = await server.shutdown()
    assert message["type"] == "lifespan.shutdown.failed"
    assert "lifespan task died" in message["message"]
    assert await server.finished() == ["lifespan.startup.complete", "lifespan.shutdown.failed"]


async def test_an_app_that_takes_the_startup_and_returns_silently_fails_startup() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    server = Server(BackburnerMiddleware(silent))
    message = await server.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert await server.finished() == ["lifespan.startup.failed"]


async def test_if_the_executor_cannot_start_the_app_is_shut_down_and_startup_fails() -> None:
    class Broken(Backburner):
        async def start(self) -> None:
            raise RuntimeError("no threads left")

    app, _ = starlette_app(executor=Broken())
    server = Server(app)
    message = await server.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "no threads left" in message["message"]
    assert await server.finished() == ["lifespan.startup.failed"]
    assert events == ["app startup", "app shutdown"]  # the app closed what it had opened


def request_app() -> Starlette:
    async def set_request_id(request: Request) -> None:
        request_id.set(request.headers.get("x-request-id", "-"))

    def job_context() -> str:
        return request_id.get()

    async def async_endpoint(request: Request) -> JSONResponse:
        await set_request_id(request)
        job = background.enqueue(job_context)
        return JSONResponse({"seen": await job, "id": job.id})

    def sync_endpoint(request: Request) -> JSONResponse:
        job = background.enqueue(record, f"sync endpoint in {threading.current_thread().name}")
        return JSONResponse({"id": job.id})

    async def stats(request: Request) -> JSONResponse:
        await background.join()
        return JSONResponse(background.stats().as_dict())

    app = Starlette(
        routes=[
            Route("/async", async_endpoint),
            Route("/sync", sync_endpoint),
            Route("/stats", stats),
        ]
    )
    app.add_middleware(BackburnerMiddleware, workers=2)
    return app


def test_async_and_sync_endpoints_enqueue_and_jobs_see_the_request_context() -> None:
    with TestClient(request_app()) as client:
        response = client.get("/async", headers={"x-request-id": "req-42"})
        assert response.json()["seen"] == "req-42"
        assert client.get("/sync").status_code == 200
        assert client.get("/stats").json()["total"]["processed"] == 2
    assert any(event.startswith("sync endpoint in") for event in events)


def test_a_test_client_used_twice_gets_a_fresh_running_executor_each_time() -> None:
    app = request_app()
    for _ in range(2):
        with TestClient(app) as client:
            assert client.get("/async").status_code == 200


def test_without_the_lifespan_enqueue_raises_not_running_saying_why() -> None:
    app = request_app()
    client = TestClient(app)  # no `with`: the lifespan never runs
    with pytest.raises(NotRunning, match=r"has not started.*TestClient"):
        client.get("/async")


def test_two_apps_in_one_process_each_run_their_own_jobs() -> None:
    def app_named(name: str) -> Starlette:
        async def where(request: Request) -> PlainTextResponse:
            job = background.enqueue(lambda: background.executor)
            executor = await job
            return PlainTextResponse(name if executor is request.scope["app_executor"] else "?")

        inner = Starlette(routes=[Route("/", where)])
        middleware = BackburnerMiddleware(inner)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope["app_executor"] = middleware.executor
            await middleware(scope, receive, send)

        return app  # type: ignore[return-value]

    with TestClient(app_named("one")) as one, TestClient(app_named("two")) as two:
        assert (one.get("/").text, two.get("/").text) == ("one", "two")


def test_fastapi_apps_use_the_same_middleware() -> None:
    app = FastAPI()
    app.add_middleware(BackburnerMiddleware, workers=1)

    @app.post("/signup")
    async def signup(email: str) -> dict[str, str]:
        job = background.enqueue(record, f"welcome {email}")
        await job
        return {"job": job.id}

    with TestClient(app) as client:
        assert client.post("/signup", params={"email": "a@example.com"}).status_code == 200
    assert events == ["welcome a@example.com"]


def test_the_fastapi_dependency_gives_the_requests_executor() -> None:
    app = FastAPI()
    app.add_middleware(BackburnerMiddleware, workers=1)

    @app.post("/signup")
    async def signup(email: str, bg: BackburnerDep) -> dict[str, str]:
        job = bg.enqueue(record, f"welcome {email}")
        await job
        return {"job": job.id, "same": str(bg is background.executor)}

    with TestClient(app) as client:
        answer = client.post("/signup", params={"email": "a@example.com"}).json()
    assert answer["same"] == "True"
    assert events == ["welcome a@example.com"]


async def test_the_fastapi_dependency_without_an_executor_says_what_is_missing() -> None:
    with pytest.raises(NotRunning, match="BackburnerMiddleware"):
        await get_backburner()


def test_the_fastapi_dependency_can_be_overridden_in_tests() -> None:
    app = FastAPI()
    mine = Backburner(workers=1)

    @app.get("/which")
    async def which(bg: BackburnerDep) -> dict[str, bool]:
        return {"mine": bg is mine}

    app.dependency_overrides[get_backburner] = lambda: mine
    with TestClient(app) as client:
        assert client.get("/which").json() == {"mine": True}


# A full queue: 503 Service Unavailable with Retry-After, not a 500 with a traceback.


def full_queue_app(gate: threading.Event, **settings: Any) -> Starlette:
    """An endpoint that enqueues a job waiting for ``gate``; one worker, one waiting job."""

    async def enqueue(request: Request) -> PlainTextResponse:
        return PlainTextResponse(background.enqueue(gate.wait, 10).id)

    app = Starlette(routes=[Route("/enqueue", enqueue, methods=["POST"])])
    app.add_middleware(BackburnerMiddleware, workers=1, max_pending=1, **settings)
    return app


@pytest.mark.parametrize("retry_after", [None, 5])
def test_the_middleware_answers_a_full_queue_with_503_and_retry_after(
    retry_after: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    settings = {} if retry_after is None else {"queue_full_retry_after": retry_after}
    with TestClient(full_queue_app(gate, **settings)) as client:
        for _ in range(2):  # one runs, one waits
            assert client.post("/enqueue").status_code == 200
        refused = [client.post("/enqueue") for _ in range(3)]
        gate.set()
    expected = retry_after or 1
    assert [(r.status_code, r.headers["retry-after"]) for r in refused] == [
        (503, str(expected))
    ] * 3
    assert refused[0].text.startswith("503 Service Unavailable: the server is too busy")
    [line, *_] = [r.getMessage() for r in caplog.records if "503" in r.getMessage()]
    assert line.startswith("answered 1 requests with 503 Service Unavailable")
    assert "queue 'default' is full" in line


def test_every_refusal_is_counted_in_the_log_though_the_loop_ends_within_the_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A TestClient's loop ends before the one-second timer fires; used twice, it counts all."""
    app = full_queue_app(gate := threading.Event())
    for _ in range(2):
        gate.clear()
        with TestClient(app) as client:
            for _ in range(2):
                client.post("/enqueue")
            for _ in range(3):
                assert client.post("/enqueue").status_code == 503
            gate.set()
    lines = [r for r in caplog.records if hasattr(r, "backburner_refused")]
    assert sum(r.backburner_refused for r in lines) == 6
    assert len(lines) <= 4  # at once, then the rest of the second's (once per client)


def test_with_queue_full_retry_after_none_queue_full_propagates() -> None:
    gate = threading.Event()
    with TestClient(full_queue_app(gate, queue_full_retry_after=None)) as client:
        for _ in range(2):
            client.post("/enqueue")
        with pytest.raises(QueueFull):
            client.post("/enqueue")
        gate.set()


def test_a_queue_full_after_the_response_started_is_not_answered_twice() -> None:
    gate = threading.Event()

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"started"
            for _ in range(3):  # the third finds the queue full, mid-response
                background.enqueue(gate.wait, 10)
                yield b"."

        return StreamingResponse(body())

    app = Starlette(routes=[Route("/stream", stream)])
    app.add_middleware(BackburnerMiddleware, workers=1, max_pending=1)
    with TestClient(app) as client:
        with pytest.raises(QueueFull):
            client.get("/stream")
        gate.set()


@pytest.mark.parametrize("framework", [Starlette, FastAPI])
def test_queue_full_handler_answers_503_as_an_exception_handler(framework: Any) -> None:
    """For an app that runs its executor itself, without the middleware."""
    gate = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with Backburner(workers=1, max_pending=1) as bg:
            app.state.bg = bg
            yield

    async def enqueue(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.bg.enqueue(gate.wait, 10).id)

    app = framework(
        routes=[Route("/enqueue", enqueue, methods=["POST"])],
        lifespan=lifespan,
        exception_handlers={QueueFull: queue_full_handler},
    )
    with TestClient(app) as client:
        statuses = [client.post("/enqueue").status_code for _ in range(3)]
        refused = client.post("/enqueue")
        gate.set()
    assert statuses == [200, 200, 503]
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "must be a whole number of seconds (or None), got str"),
        (1.5, "must be a whole number of seconds (or None), got float"),
        (-1, "must be 0 to 3600 seconds"),
    ],
)
async def test_a_bad_queue_full_retry_after_fails_startup_naming_it(
    value: object, message: str
) -> None:
    app = Starlette()
    app.add_middleware(BackburnerMiddleware, queue_full_retry_after=value)  # type: ignore[arg-type]
    server = Server(app)
    startup = await server.startup()
    assert startup["type"] == "lifespan.startup.failed"
    assert f"queue_full_retry_after {message}" in startup["message"]
    await server.finished()


async def test_an_executor_given_with_settings_fails_the_startup_saying_so() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app's lifespan is not reached")

    server = Server(BackburnerMiddleware(app, executor=Backburner(), workers=2))
    message = await server.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "executor= or the executor's settings (workers), not both" in message["message"]
    assert await server.finished() == ["lifespan.startup.failed"]
