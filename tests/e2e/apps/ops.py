"""A plain app as a user writes one, for the operations tests: no logging configured, health
probes at ``/probes`` and metrics at ``/metrics``, mounted outside the dashboard.

Unlike the other apps it does not call ``watch_backburner_log()``: what backburner writes to
stderr under a bare ``uvicorn`` is what is tested (``BB_E2E_CONFIGURE_LOGGING=1``: the app
configures logging in its lifespan, at WARNING). Jobs tell the test what they did through
the event log (``record``): ``started``, ``finished`` and, for ``holds_drain``, the answer of
``/ready`` during the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from backburner import Backburner, BackburnerMiddleware, job
from backburner.health import health_app
from backburner.prometheus import metrics_app

from ._events import record, setting

bg = Backburner(workers=2, shutdown_timeout=setting("shutdown_timeout", 10))
probes = health_app(bg)
app_log = logging.getLogger("tests.e2e.ops")
_failed: set[str] = set()


@job(retries=1, backoff=0.05, jitter=0)
async def flaky(key: str) -> None:
    """Fails its first attempt (backburner logs a warning), succeeds the second."""
    app_log.warning("inside flaky %s", key)
    if key not in _failed:
        _failed.add(key)
        raise ValueError(f"first attempt of {key} fails")
    record("finished", key=key)


async def holds_drain(key: str) -> None:
    """Runs until the drain has begun, then asks ``/ready`` from inside the process."""
    record("started", key=key)
    deadline = time.monotonic() + 30
    while bg.running and time.monotonic() < deadline:  # noqa: ASYNC110 - no event says it
        await asyncio.sleep(0.01)  # (the drain begins at SIGTERM, in uvicorn's own code)
    transport = httpx.ASGITransport(app=probes)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        response = await client.get("/ready")
    record("ready_during_drain", key=key, status=response.status_code, body=response.json())


JOBS = {"flaky": flaky, "holds_drain": holds_drain}


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def enqueue(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    handle = bg.enqueue(JOBS[request.path_params["kind"]], key)
    record("enqueued", key=key, id=handle.id)
    return JSONResponse({"id": handle.id})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if setting("configure_logging", 0):  # as an app that sets logging up in its lifespan
        logging.basicConfig(level=logging.WARNING, format="app %(levelname)s %(name)s: %(message)s")
    yield


app = BackburnerMiddleware(
    Starlette(
        lifespan=lifespan,
        routes=[
            Route("/health", health),
            Route("/enqueue/{kind}/{key}", enqueue, methods=["POST"]),
            Mount("/probes", probes),
            Route("/metrics", metrics_app(bg)),
        ],
    ),
    executor=bg,
)
