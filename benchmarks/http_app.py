"""The app ``http.py`` serves with uvicorn: one route per way of doing 50 ms of work.

- ``/noop``: answers at once (the server's own ceiling).
- ``/enqueue``: ``background.enqueue(job)`` through ``BackburnerMiddleware``.
- ``/pool``: ``put_nowait`` into a hand-written pool: an ``asyncio.Queue`` and the same number
  of worker tasks, started with the app, with no shutdown handling (what one writes by hand).
  Each worker awaits the job itself: no task, no context of its own.
- ``/taskpool``: the same pool, but each job runs as its own ``Task`` in the ``contextvars``
  context captured at enqueue (``_baselines.TaskPerJob``, baseline (a) of ``core.py``): the
  isolation backburner gives, at the least it can cost. No shutdown handling either.
- ``/background``: Starlette's ``BackgroundTasks``: the job runs after the response, inside the
  request's own task.
- ``/inline``: the request awaits the job itself.
- ``/awaiting``: ``/enqueue`` after ``await asyncio.sleep(0)``: a request that suspends once,
  as ``/durable``'s does while its commit is on the way, so that what the suspension costs
  (more garbage collections: the request's objects outlive other requests' allocations) is
  told from what the journal costs.
- ``/durable``: ``await background.aenqueue(job)`` with a journal (``BENCH_JOURNAL``, set by the
  driver for this route only): each request waits for its job's commit (group commit: one
  commit carries the jobs of every request waiting meanwhile); starts and ends are written too.

The job is ``await asyncio.sleep(0.05)`` (a call to a slow API, say); backburner and the pool
run ``BENCH_WORKERS`` (64) at once, so they finish at most 1,280 jobs a second and a faster
load builds a backlog, as a burst of traffic would. ``/enqueue``, ``/pool`` and ``/taskpool``
answer 503 when their queue (``BENCH_MAX_PENDING`` jobs) is full. ``/counts`` tells the load
generator's driver what was accepted and done; the app's shutdown (which runs after
backburner's drain) writes the final counts and backburner's shutdown report to
``BENCH_COUNTS``. ``/gc`` answers how many garbage
collections the process has run so far and how long they took in all (timed by a
``gc.callbacks`` hook installed at import), so the driver can take the difference over a load.

``/sleepers?count=&seconds=`` enqueues sync jobs on the ``sync`` queue (20 threads), for the
loop-health row: how fast ``/noop`` answers while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from backburner import Backburner, BackburnerMiddleware, QueueConfig, QueueFull, background
from backburner import job as registered
from benchmarks._baselines import TaskPerJob

JOB_SECONDS = 0.05
WORKERS = int(os.environ.get("BENCH_WORKERS", 64))  # jobs at once, in backburner and the pool
MAX_PENDING = int(os.environ.get("BENCH_MAX_PENDING", 1_000_000))  # in backburner and the pools
SHUTDOWN_TIMEOUT = 8.0

counts = {"accepted": 0, "refused": 0, "done": 0}


async def job(n: int) -> None:
    """The work of request ``n``: a real job has an argument or two."""
    await asyncio.sleep(JOB_SECONDS)
    counts["done"] += 1


@registered(name="bench.durable")
async def durable_job(n: int) -> None:
    """The same work, registered by name so that a journal can keep it."""
    await asyncio.sleep(JOB_SECONDS)
    counts["done"] += 1


def sleeps(seconds: float) -> None:
    time.sleep(seconds)


# The hand-written pool.

Work = tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]
pool: asyncio.Queue[Work] | None = None


async def pool_worker(queue: asyncio.Queue[Work]) -> None:
    while True:
        fn, args = await queue.get()
        with contextlib.suppress(Exception):  # a job's failure must not kill the worker
            await fn(*args)


task_pool: TaskPerJob | None = None


# Garbage collections, timed from the process's start: /gc answers the running totals.

gc_totals = {"collections": 0, "seconds": 0.0, "gen0": 0, "gen1": 0, "gen2": 0}
_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    gc_totals["seconds"] += time.perf_counter() - _gc_started
    gc_totals["collections"] += 1
    gc_totals[f"gen{info['generation']}"] += 1


gc.callbacks.append(_time_gc)


# Routes.


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def noop(request: Request) -> Response:
    return PlainTextResponse("ok")


async def enqueue(request: Request) -> Response:
    try:
        background.enqueue(job, counts["accepted"])
    except QueueFull:
        counts["refused"] += 1
        return PlainTextResponse("full", status_code=503)
    counts["accepted"] += 1
    return PlainTextResponse("ok")


async def awaiting(request: Request) -> Response:
    await asyncio.sleep(0)
    return await enqueue(request)


async def durable(request: Request) -> Response:
    await background.aenqueue(durable_job, counts["accepted"])
    counts["accepted"] += 1
    return PlainTextResponse("ok")


async def put_in_pool(request: Request) -> Response:
    assert pool is not None
    try:
        pool.put_nowait((job, (counts["accepted"],)))
    except asyncio.QueueFull:
        counts["refused"] += 1
        return PlainTextResponse("full", status_code=503)
    counts["accepted"] += 1
    return PlainTextResponse("ok")


async def put_in_task_pool(request: Request) -> Response:
    assert task_pool is not None
    try:
        task_pool.enqueue(job, counts["accepted"])
    except asyncio.QueueFull:
        counts["refused"] += 1
        return PlainTextResponse("full", status_code=503)
    counts["accepted"] += 1
    return PlainTextResponse("ok")


async def background_task(request: Request) -> Response:
    counts["accepted"] += 1
    return PlainTextResponse("ok", background=BackgroundTask(job, counts["accepted"]))


async def inline(request: Request) -> Response:
    counts["accepted"] += 1
    await job(counts["accepted"])
    return PlainTextResponse("ok")


async def sleepers(request: Request) -> Response:
    count, seconds = int(request.query_params["count"]), float(request.query_params["seconds"])
    for _ in range(count):
        background.options(queue="sync").enqueue(sleeps, seconds)
    return PlainTextResponse("ok")


async def current_counts(request: Request) -> Response:
    return JSONResponse({**counts, "stats": background.stats().total.as_dict()})


async def gc_counts(request: Request) -> Response:
    return JSONResponse(gc_totals)


executor = Backburner(
    workers=WORKERS,
    max_pending=MAX_PENDING,
    shutdown_timeout=SHUTDOWN_TIMEOUT,
    queues={"sync": QueueConfig(workers=20)},
    journal=os.environ.get("BENCH_JOURNAL"),
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool, task_pool
    pool = asyncio.Queue(MAX_PENDING)
    workers = [asyncio.create_task(pool_worker(pool)) for _ in range(WORKERS)]
    task_pool = TaskPerJob(workers=WORKERS, max_pending=MAX_PENDING)
    await task_pool.start()
    yield
    # Runs after backburner's drain; the pools get no such step: what they hold now is lost.
    report = await executor.aclose()  # closed already: returns the report it logged
    path = os.environ.get("BENCH_COUNTS")
    if path:
        with open(path, "w") as file:  # noqa: ASYNC230 - the process is on its way out
            json.dump({**counts, "reported": len(report.unfinished)}, file)
    del workers


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/noop", noop),
        Route("/enqueue", enqueue),
        Route("/pool", put_in_pool),
        Route("/taskpool", put_in_task_pool),
        Route("/background", background_task),
        Route("/inline", inline),
        Route("/awaiting", awaiting),
        Route("/durable", durable),
        Route("/sleepers", sleepers, methods=["POST"]),
        Route("/counts", current_counts),
        Route("/gc", gc_counts),
    ],
    lifespan=lifespan,
)
app.add_middleware(BackburnerMiddleware, executor=executor)
