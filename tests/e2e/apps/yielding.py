"""A Starlette app with ``yield_to_requests`` on, for the yielding tests: jobs that hold every
worker until released, an endpoint slow to answer, and the executor's stats.

The lag target is set out of reach (``BB_E2E_TARGET_LAG``, 5 s by default): the request
latency is the signal these tests drive (``target_latency``, ``BB_E2E_TARGET_LATENCY``).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import BackburnerMiddleware, YieldToRequests, background

from ._events import setting, watch_backburner_log

watch_backburner_log()

release_all = asyncio.Event()  # made at import; first used on the server's loop


async def held() -> None:
    """Holds its worker until ``POST /release``."""
    await release_all.wait()


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def fill(request: Request) -> JSONResponse:
    """``?count=``: that many jobs that hold their worker until ``/release``."""
    count = int(request.query_params["count"])
    return JSONResponse([background.enqueue(held).id for _ in range(count)])


async def slow(request: Request) -> PlainTextResponse:
    """Answers after ``?seconds=`` (awaiting: the loop stays free, the request is slow)."""
    await asyncio.sleep(float(request.query_params["seconds"]))
    return PlainTextResponse("slow")


async def release(request: Request) -> PlainTextResponse:
    release_all.set()
    return PlainTextResponse("released")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(background.stats().as_dict())


app = BackburnerMiddleware(
    Starlette(
        routes=[
            Route("/health", health),
            Route("/fill", fill, methods=["POST"]),
            Route("/slow", slow),
            Route("/release", release, methods=["POST"]),
            Route("/stats", stats),
        ]
    ),
    workers=int(setting("workers", 4)),
    yield_to_requests=YieldToRequests(
        target_lag=setting("target_lag", 5.0),
        target_latency=setting("target_latency", 0.05),
        floor=int(setting("floor", 1)),
    ),
)
