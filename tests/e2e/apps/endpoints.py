"""A Starlette app whose async and sync endpoints enqueue, and whose jobs enqueue follow-ups.

A middleware puts the request's ``X-Request-ID`` in a context variable; jobs record what they
see of it. Enqueueing refused (``NotRunning``, as under ``--lifespan off``) answers 503 with
backburner's message.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from backburner import BackburnerMiddleware, NotRunning, background

from ._events import record, watch_backburner_log

watch_backburner_log()

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


class RequestIdMiddleware:
    """Sets ``request_id`` from the ``X-Request-ID`` header for the rest of the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        token = request_id.set(headers.get(b"x-request-id", b"none").decode())
        try:
            await self.app(scope, receive, send)
        finally:
            request_id.reset(token)


async def async_job(key: str, follow_up: bool) -> None:
    record("started", key=key, request_id=request_id.get())
    if follow_up:  # a sync job, enqueued from the event loop
        _enqueue(f"{key}/follow-up", sync_job, False)
    record("finished", key=key, request_id=request_id.get())


def sync_job(key: str, follow_up: bool) -> None:
    record("started", key=key, request_id=request_id.get())
    if follow_up:  # an async job, enqueued from a worker thread
        _enqueue(f"{key}/follow-up", async_job, False)
    record("finished", key=key, request_id=request_id.get())


def _enqueue(key: str, fn: Callable[[str, bool], object], follow_up: bool) -> str:
    job = background.enqueue(fn, key, follow_up)
    record("enqueued", key=key, id=job.id)
    return job.id


async def enqueue_async(request: Request) -> Response:
    try:
        return JSONResponse({"id": _enqueue(request.query_params["key"], async_job, True)})
    except NotRunning as exc:
        return PlainTextResponse(str(exc), status_code=503)


def enqueue_sync(request: Request) -> Response:
    """A plain ``def`` endpoint: Starlette runs it in its thread pool."""
    try:
        return JSONResponse({"id": _enqueue(request.query_params["key"], sync_job, True)})
    except NotRunning as exc:
        return PlainTextResponse(str(exc), status_code=503)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/async", enqueue_async, methods=["POST"]),
        Route("/sync", enqueue_sync, methods=["POST"]),
    ]
)
app.add_middleware(BackburnerMiddleware, workers=4, shutdown_timeout=2.0)
app.add_middleware(RequestIdMiddleware)
