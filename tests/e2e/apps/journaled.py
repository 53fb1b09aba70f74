"""A Starlette app with a journal: its jobs append their number to a results file.

Settings from the test: ``BB_E2E_JOURNAL`` (the journal's path), ``BB_E2E_RESULTS`` (the file
each finished job appends ``<number> <pid>`` to, one ``os.write`` with ``O_APPEND``: whole lines
even from several processes, and nothing buffered for a SIGKILL to lose), ``BB_E2E_JOB_MS``
(how long a job takes), ``BB_E2E_WORKERS``, ``BB_E2E_LEASE``, ``BB_E2E_HEARTBEAT``,
``BB_E2E_MAX_ATTEMPTS``, ``BB_E2E_SHUTDOWN_TIMEOUT``.

``POST /enqueue?start=S&count=N`` enqueues jobs S to S+N-1 and answers once all are committed.
``POST /enqueue-killer?kind=async|sync`` enqueues a job that records the event ``killer`` and
SIGKILLs its own process (the answer may never come).
``POST /enqueue-limited?start=S&count=N`` enqueues jobs S to S+N-1 of a job with
``ConcurrencyLimit(1)``: one runs, the others are held; each appends
``<number> <pid> <start> <end>``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import BackburnerMiddleware, ConcurrencyLimit, JournalConfig, background, job

from ._events import record, setting, watch_backburner_log

watch_backburner_log()

_results = os.open(os.environ["BB_E2E_RESULTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_job_seconds = setting("job_ms", 5) / 1000


@job(name="e2e.record")
async def record_number(number: int) -> None:
    """The side effect the test counts: one line per completed run."""
    await asyncio.sleep(_job_seconds)
    os.write(_results, f"{number} {os.getpid()} {time.time()}\n".encode())


@job(name="e2e.record_limited", limits=[ConcurrencyLimit(1, name="one-at-a-time")])
async def record_limited(number: int) -> None:
    """One at a time in its process: its line says when it ran, to check that."""
    began = time.time()
    await asyncio.sleep(_job_seconds)
    os.write(_results, f"{number} {os.getpid()} {began} {time.time()}\n".encode())


@job(name="e2e.kills_its_process")
async def kills_its_process() -> None:
    """A job that takes its process down with it, every time it runs."""
    record("killer")
    os.kill(os.getpid(), signal.SIGKILL)


@job(name="e2e.kills_its_process_sync")
def kills_its_process_sync() -> None:
    """The same in a worker thread."""
    record("killer")
    os.kill(os.getpid(), signal.SIGKILL)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def enqueue(request: Request) -> JSONResponse:
    start = int(request.query_params["start"])
    count = int(request.query_params["count"])
    numbers = range(start, start + count)
    jobs = await asyncio.gather(*(background.aenqueue(record_number, n) for n in numbers))
    return JSONResponse({"ids": [j.id for j in jobs], "pid": os.getpid()})


async def enqueue_sync(request: Request) -> JSONResponse:
    """The same with the blocking ``enqueue``: each call returns once its job is committed."""
    start = int(request.query_params["start"])
    count = int(request.query_params["count"])
    jobs = [background.enqueue(record_number, n) for n in range(start, start + count)]
    return JSONResponse({"ids": [j.id for j in jobs], "pid": os.getpid()})


async def enqueue_limited(request: Request) -> JSONResponse:
    start = int(request.query_params["start"])
    count = int(request.query_params["count"])
    jobs = [background.enqueue(record_limited, n) for n in range(start, start + count)]
    return JSONResponse({"statuses": [str(j.status) for j in jobs], "pid": os.getpid()})


async def enqueue_killer(request: Request) -> JSONResponse:
    sync = request.query_params["kind"] == "sync"
    killer = await background.aenqueue(kills_its_process_sync if sync else kills_its_process)
    return JSONResponse({"id": killer.id})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(background.stats().as_dict())


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/enqueue", enqueue, methods=["POST"]),
        Route("/enqueue-sync", enqueue_sync, methods=["POST"]),
        Route("/enqueue-killer", enqueue_killer, methods=["POST"]),
        Route("/enqueue-limited", enqueue_limited, methods=["POST"]),
        Route("/stats", stats),
    ]
)
app.add_middleware(
    BackburnerMiddleware,
    workers=int(setting("workers", 4)),
    max_pending=20_000,
    shutdown_timeout=setting("shutdown_timeout", 5),
    journal=JournalConfig(
        os.environ["BB_E2E_JOURNAL"],
        lease=setting("lease", 4),
        heartbeat=setting("heartbeat", 0.5),
        max_attempts=int(setting("max_attempts", 3)),
    ),
)
