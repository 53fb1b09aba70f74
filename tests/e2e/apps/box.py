"""One app, several processes on one box (``uvicorn --workers 3``): periodic ticks, unique keys.

Settings from the test: ``BB_E2E_JOURNAL`` (a journal's path; none: in memory), ``BB_E2E_EVERY``
(the periodic job's period, seconds), ``BB_E2E_JOB_MS`` (how long the unique job runs),
``BB_E2E_LEASE``, ``BB_E2E_HEARTBEAT``. The coordination directory is the default one, under
``XDG_RUNTIME_DIR`` (the test points it at its own folder).

Each tick of the periodic job records the event ``tick`` (with the pid that ran it); each run of
the unique job records ``unique ran``, each run of ``fails`` records ``fails ran`` (then fails).

Routes: ``POST /unique?key=K`` enqueues the unique job with key ``K`` (answers its id and this
process's pid); ``POST /fail?number=N`` enqueues ``fails``; ``POST /steps?count=N`` a job of N
steps that reports its progress; ``GET /status/ID`` answers ``lookup(ID)`` from whichever
worker; ``GET /whoami`` answers the pid.
"""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import (
    BackburnerMiddleware,
    JournalConfig,
    Periodic,
    background,
    current_job,
    job,
)
from backburner.dashboard import dashboard

from ._events import record, setting, watch_backburner_log

watch_backburner_log()


@job(name="e2e.box.tick")
async def tick() -> None:
    """The periodic job: one event per run."""
    record("tick")


@job(name="e2e.box.unique", unique=lambda key: key, on_duplicate="return")
async def unique(key: str) -> None:
    """A unique job: one event per run, then it takes its time (holding its key)."""
    record("unique ran", key=key)
    await asyncio.sleep(setting("job_ms", 500) / 1000)
    record("unique done", key=key)


@job(name="e2e.box.fails")
async def fails(number: int) -> None:
    """Fails every time: a job for the dead list."""
    record("fails ran", number=number)
    raise RuntimeError(f"job {number} fails")


@job(name="e2e.box.steps")
async def steps(count: int) -> dict[str, int]:
    """Takes ``count`` steps of ``BB_E2E_JOB_MS`` each, saying how far it is after each."""
    for step in range(count):
        current_job().set_progress(step, count, f"step {step}")
        await asyncio.sleep(setting("job_ms", 500) / 1000)
    return {"steps": count}


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def enqueue_unique(request: Request) -> JSONResponse:
    held = await background.aenqueue(unique, request.query_params["key"])
    return JSONResponse({"id": held.id, "pid": os.getpid(), "status": held.status.value})


async def enqueue_failing(request: Request) -> JSONResponse:
    failing = await background.aenqueue(fails, int(request.query_params["number"]))
    return JSONResponse({"id": failing.id, "pid": os.getpid()})


async def enqueue_steps(request: Request) -> JSONResponse:
    stepping = await background.aenqueue(steps, int(request.query_params["count"]))
    return JSONResponse({"id": stepping.id, "pid": os.getpid()})


async def status(request: Request) -> JSONResponse:
    """``lookup`` from this worker, whichever enqueued the job: 404 if it is not known."""
    info = await background.lookup(request.path_params["job_id"])
    if info is None:
        return JSONResponse({"pid": os.getpid()}, status_code=404)
    progress = None if info.progress is None else info.progress.done
    return JSONResponse(
        {
            "pid": os.getpid(),
            "status": info.status.value,
            "progress": progress,
            "result": info.result,
        }
    )


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid(), **background.stats().as_dict()})


journal = os.environ.get("BB_E2E_JOURNAL")
app = Starlette(
    routes=[
        Route("/health", health),
        Route("/whoami", whoami),
        Route("/unique", enqueue_unique, methods=["POST"]),
        Route("/fail", enqueue_failing, methods=["POST"]),
        Route("/steps", enqueue_steps, methods=["POST"]),
        Route("/status/{job_id}", status),
        Route("/stats", stats),
    ]
)
app.mount("/bb", dashboard(insecure_local=True))
app.add_middleware(
    BackburnerMiddleware,
    workers=4,
    shutdown_timeout=3,
    periodic=[Periodic(tick, every=setting("every", 1))],
    journal=None
    if journal is None
    else JournalConfig(journal, lease=setting("lease", 4), heartbeat=setting("heartbeat", 0.5)),
)
