"""A Starlette app for the load and fault cases: several processes, restarts, loop health,
backpressure. Every event carries the pid of the process that wrote it.

Settings (``BB_E2E_<NAME>``): ``workers``, ``max_pending``, ``shutdown_timeout``,
``cancel_grace``, ``loop_lag_warning`` (0: off), ``platform_grace`` (0: "auto").
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import BackburnerMiddleware, QueueFull, background

from ._events import record, setting, watch_backburner_log
from .drain import _enqueue as enqueue
from .drain import blocks_thread, short_async, sleeps_long

watch_backburner_log()

#: Released by ``POST /release``: the gated jobs wait for it.
gate = threading.Event()
flood_gate = asyncio.Event()  # made at import; first used on the server's loop


# Jobs.


def busy_sync(key: str, seconds: float) -> None:
    """Holds its thread for ``seconds``: half of it computing (holding the GIL), half asleep."""
    record("started", key=key)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        spin_until = time.monotonic() + 0.01
        while time.monotonic() < spin_until:
            pass
        time.sleep(0.01)
    record("finished", key=key)


async def busy_async(key: str, seconds: float) -> None:
    """Keeps the loop busy for ``seconds``: short bursts of work between awaits."""
    record("started", key=key)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sum(range(2000))
        await asyncio.sleep(0.005)
    record("finished", key=key)


def sleeps(key: str, seconds: float) -> None:
    """A sync job blocked in I/O (here a sleep) for ``seconds``."""
    record("started", key=key)
    time.sleep(seconds)
    record("finished", key=key)


def waits_for_gate(key: str) -> None:
    record("started", key=key)
    gate.wait(30)
    record("finished", key=key)


async def blocks_loop(key: str, seconds: float) -> None:
    """The mistake the lag monitor is for: a blocking call inside an async job."""
    record("blocking started", key=key)
    time.sleep(seconds)  # noqa: ASYNC251 - the point of this job
    record("blocking done", key=key)


async def blocks_loop_in_cleanup(key: str, seconds: float) -> None:
    """Cancelled at shutdown, its cleanup blocks the loop: no executor can cut that short."""
    record("started", key=key)
    try:
        await asyncio.sleep(3600)
    finally:
        record("cleanup started", key=key)
        time.sleep(seconds)  # noqa: ASYNC251 - the point of this job
        record("cleanup done", key=key)


async def waits_for_flood_gate() -> None:
    await flood_gate.wait()


async def noop() -> None:
    pass


# Endpoints.


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def pid(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


def sync_ping(request: Request) -> JSONResponse:
    """A plain ``def`` endpoint: it needs a token of anyio's default thread limiter."""
    return JSONResponse({"thread": threading.current_thread().name})


async def limiter(request: Request) -> JSONResponse:
    default = anyio.to_thread.current_default_thread_limiter()
    return JSONResponse({"total": default.total_tokens, "borrowed": default.borrowed_tokens})


#: What ``/busy`` and ``/long`` already enqueued in this process (with ``once=1``, once each).
done_once: set[str] = set()


def _first_time(request: Request, what: str) -> bool:
    if request.query_params.get("once") != "1":
        return True
    if what in done_once:
        return False
    done_once.add(what)
    return True


async def busy(request: Request) -> JSONResponse:
    """``?key=&seconds=[&once=1]``: a busy sync job and a busy async job, in this process.

    With ``once=1`` a process takes them only once: a test that spreads work over the processes
    of ``--workers`` asks until each has some, without piling it on one.
    """
    key, seconds = request.query_params["key"], float(request.query_params["seconds"])
    ids = {}
    if _first_time(request, "busy"):
        ids[f"{key}/sync"] = enqueue(f"{key}/sync", busy_sync, seconds)
        ids[f"{key}/async"] = enqueue(f"{key}/async", busy_async, seconds)
    return JSONResponse({"pid": os.getpid(), "ids": ids})


async def long(request: Request) -> JSONResponse:
    """``?key=[&once=1]``: two jobs that outlive any deadline and one short one."""
    key = request.query_params["key"]
    ids = {}
    if _first_time(request, "long"):
        ids[f"{key}/sleeps-long"] = enqueue(f"{key}/sleeps-long", sleeps_long)
        ids[f"{key}/blocks-thread"] = enqueue(f"{key}/blocks-thread", blocks_thread)
        ids[f"{key}/short"] = enqueue(f"{key}/short", short_async, 1)
    return JSONResponse({"pid": os.getpid(), "ids": ids})


async def sleepers(request: Request) -> JSONResponse:
    """``?count=&seconds=``: sync jobs that sleep ``seconds`` each."""
    count, seconds = int(request.query_params["count"]), float(request.query_params["seconds"])
    return JSONResponse(
        {f"sleeps-{n}": enqueue(f"sleeps-{n}", sleeps, seconds) for n in range(count)}
    )


async def gated(request: Request) -> JSONResponse:
    """``?count=``: sync jobs that each hold a thread until ``POST /release``."""
    count = int(request.query_params["count"])
    return JSONResponse({f"gated-{n}": enqueue(f"gated-{n}", waits_for_gate) for n in range(count)})


async def release(request: Request) -> PlainTextResponse:
    gate.set()
    flood_gate.set()
    return PlainTextResponse("released")


async def hog(request: Request) -> JSONResponse:
    """``?seconds=``: an async job that blocks the loop for ``seconds``."""
    seconds = float(request.query_params["seconds"])
    return JSONResponse({"hog": enqueue("hog", blocks_loop, seconds)})


async def hog_in_cleanup(request: Request) -> JSONResponse:
    """``?seconds=``: a job whose cleanup, when cancelled, blocks the loop for ``seconds``."""
    seconds = float(request.query_params["seconds"])
    return JSONResponse({"hog": enqueue("hog", blocks_loop_in_cleanup, seconds)})


async def flood(request: Request) -> JSONResponse:
    """``?count=``: enqueue ``count`` jobs that wait for ``/release``, as fast as possible.

    Counts what was accepted and what was refused with ``QueueFull``; keeps one message.
    """
    count = int(request.query_params["count"])
    accepted = refused = 0
    message = ""
    for _ in range(count):
        try:
            background.enqueue(waits_for_flood_gate)
            accepted += 1
        except QueueFull as exc:
            refused += 1
            message = message or str(exc)
    stats = background.stats().total
    return JSONResponse(
        {"accepted": accepted, "refused": refused, "message": message, "pending": stats.pending}
    )


async def aflood(request: Request) -> JSONResponse:
    """``?count=``: ``await aenqueue`` ``count`` quick jobs; the most pending seen at once."""
    count = int(request.query_params["count"])
    most_pending = 0
    for n in range(count):
        await background.aenqueue(noop)
        if n % 100 == 0:
            most_pending = max(most_pending, background.stats().total.pending)
    await background.join()
    stats = background.stats().total
    return JSONResponse(
        {"most_pending": most_pending, "processed": stats.processed, "failed": stats.failed}
    )


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(background.stats().as_dict())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    record("startup done")
    yield
    record("app shutdown")


def _optional(name: str) -> float | None:
    value = setting(name, 0)
    return value or None


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/pid", pid),
        Route("/ping", ping),
        Route("/sync-ping", sync_ping),
        Route("/limiter", limiter),
        Route("/stats", stats),
        Route("/busy", busy, methods=["POST"]),
        Route("/long", long, methods=["POST"]),
        Route("/sleepers", sleepers, methods=["POST"]),
        Route("/gated", gated, methods=["POST"]),
        Route("/release", release, methods=["POST"]),
        Route("/hog", hog, methods=["POST"]),
        Route("/hog-in-cleanup", hog_in_cleanup, methods=["POST"]),
        Route("/flood", flood, methods=["POST"]),
        Route("/aflood", aflood, methods=["POST"]),
    ],
    lifespan=lifespan,
)
app.add_middleware(
    BackburnerMiddleware,
    workers=int(setting("workers", 4)),
    max_pending=int(setting("max_pending", 10_000)),
    shutdown_timeout=setting("shutdown_timeout", 3.0),
    cancel_grace=setting("cancel_grace", 1.0),
    loop_lag_warning=_optional("loop_lag_warning"),
    platform_grace=_optional("platform_grace") or "auto",
)
