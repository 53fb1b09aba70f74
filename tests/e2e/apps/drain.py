"""A Starlette app for the shutdown cases: many short jobs, jobs that outlive the deadline.

Settings come from the test (``BB_E2E_WORKERS``, ``BB_E2E_SHUTDOWN_TIMEOUT``,
``BB_E2E_CANCEL_GRACE``). Jobs take a ``key`` the test knows in advance and record
``started`` / ``finished`` under it; the endpoints record ``enqueued`` with the key and the
job id, so the test can match the shutdown report's ids to its own keys.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import BackburnerMiddleware, background

from ._events import record, setting, watch_backburner_log

watch_backburner_log()


async def short_async(key: str, ms: int) -> None:
    record("started", key=key)
    await asyncio.sleep(ms / 1000)
    record("finished", key=key)


def short_sync(key: str, ms: int) -> None:
    record("started", key=key)
    time.sleep(ms / 1000)
    record("finished", key=key)


async def sleeps_long(key: str) -> None:
    """Cancelled at the deadline, with nothing to clean up."""
    record("started", key=key)
    await asyncio.sleep(60)
    record("finished", key=key)


async def swallows_cancel(key: str) -> None:
    """Catches every cancellation and sleeps on: it can only be abandoned."""
    record("started", key=key)
    until = time.monotonic() + 60
    while time.monotonic() < until:
        try:
            await asyncio.sleep(until - time.monotonic())
        except asyncio.CancelledError:
            record("swallowed", key=key)
    record("finished", key=key)


def blocks_thread(key: str) -> None:
    """A sync job nothing can interrupt: abandoned in its daemon thread."""
    record("started", key=key)
    time.sleep(60)
    record("finished", key=key)


def sleeps_two_seconds_in_thread(key: str) -> None:
    """A sync job that ends on its own, two seconds after it started."""
    record("started", key=key)
    time.sleep(2)
    record("finished", key=key)


async def cleans_up(key: str) -> None:
    """On cancellation, takes half a second of shielded cleanup, then stops as cancelled."""
    record("started", key=key)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        record("cleanup started", key=key)
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.5)
        record("cleanup done", key=key)
        raise
    record("finished", key=key)


def exits_in_thread(key: str) -> None:
    """A sync job that calls ``sys.exit``, as argparse or click inside a job would."""
    record("started", key=key)
    sys.exit(3)


async def exits_on_loop(key: str) -> None:
    """An async job that raises ``SystemExit`` on the event loop."""
    record("started", key=key)
    raise SystemExit(4)


async def interrupts_on_loop(key: str) -> None:
    """An async job that raises ``KeyboardInterrupt`` on the event loop."""
    record("started", key=key)
    raise KeyboardInterrupt


async def stops_loop(key: str) -> None:
    """A programming error: stops the event loop the whole server runs on."""
    record("started", key=key)
    asyncio.get_running_loop().stop()
    await asyncio.sleep(1)
    record("finished", key=key)


def _enqueue(key: str, fn: Callable[..., Awaitable[None] | None], *args: Any) -> str:
    job = background.enqueue(fn, key, *args)
    record("enqueued", key=key, id=job.id)
    return job.id


async def enqueue_short(request: Request) -> JSONResponse:
    """``?first=&count=&sync_every=``: jobs ``short-<n>`` of 1 to 5 ms, some of them sync."""
    first = int(request.query_params["first"])
    count = int(request.query_params["count"])
    sync_every = int(request.query_params.get("sync_every", 4))  # 0: none is sync
    ids = {}
    for n in range(first, first + count):
        fn = short_sync if sync_every and n % sync_every == 0 else short_async
        ids[f"short-{n}"] = _enqueue(f"short-{n}", fn, 1 + n % 5)
    return JSONResponse(ids)


#: What ``POST /one?job=<name>&key=<key>`` enqueues.
ONE_JOB: dict[str, Callable[[str], Awaitable[None] | None]] = {
    "sleeps-long": sleeps_long,
    "swallows-cancel": swallows_cancel,
    "blocks-thread": blocks_thread,
    "sleeps-two-seconds-in-thread": sleeps_two_seconds_in_thread,
    "cleans-up": cleans_up,
    "exits-in-thread": exits_in_thread,
    "exits-on-loop": exits_on_loop,
    "interrupts-on-loop": interrupts_on_loop,
    "stops-loop": stops_loop,
}


async def enqueue_one(request: Request) -> JSONResponse:
    key = request.query_params["key"]
    return JSONResponse({key: _enqueue(key, ONE_JOB[request.query_params["job"]])})


async def enqueue_stubborn(request: Request) -> JSONResponse:
    """Four jobs that outlive any deadline, then two that wait behind them (with 4 workers)."""
    ids = {
        "sleeps-long": _enqueue("sleeps-long", sleeps_long),
        "swallows-cancel": _enqueue("swallows-cancel", swallows_cancel),
        "blocks-thread": _enqueue("blocks-thread", blocks_thread),
        "cleans-up": _enqueue("cleans-up", cleans_up),
        "waits-1": _enqueue("waits-1", short_async, 1),
        "waits-2": _enqueue("waits-2", short_sync, 1),
    }
    return JSONResponse(ids)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    record("startup started")
    _enqueue("from-startup", short_async, 1)
    # A window in which an executor that ran jobs before startup completes would be caught.
    await asyncio.sleep(0.1)
    record("startup done")
    yield
    record("app shutdown")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/short", enqueue_short, methods=["POST"]),
        Route("/stubborn", enqueue_stubborn, methods=["POST"]),
        Route("/one", enqueue_one, methods=["POST"]),
    ],
    lifespan=lifespan,
)
app.add_middleware(
    BackburnerMiddleware,
    workers=int(setting("workers", 8)),
    max_pending=10_000,
    shutdown_timeout=setting("shutdown_timeout", 5.0),
    cancel_grace=setting("cancel_grace", 1.0),
)
