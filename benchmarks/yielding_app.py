"""The app ``yielding.py`` serves with uvicorn: ``/noop`` beside jobs that burn CPU.

- ``/noop``: answers at once: what wrk loads.
- ``POST /fill?count=``: enqueue ``count`` burning jobs; each one enqueues its successor as it
  ends, so every worker stays busy for as long as the server runs.
- ``/counts``: jobs done so far, and ``stats().yielding`` (None when off).

A job is 10 steps of pure-Python work, each about 5 ms on this machine (``BENCH_LOOPS``, the
driver's calibration, the same for every server of a run: under contention a step is the same
work, not the same time), with
an ``await asyncio.sleep(0)`` between steps: the loop is free between them, and a request
waits for at most one step of each running job.

Settings from the environment: ``BENCH_WORKERS`` (4), ``BENCH_YIELD`` (``on``/``off``),
``BENCH_TARGET_LAG`` (seconds, 0.005), ``BENCH_FLOOR`` (1), ``BENCH_LOOPS`` (calibrated here
if unset).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from backburner import BackburnerError, BackburnerMiddleware, YieldToRequests, background

STEP_SECONDS = 0.005
STEPS = 10
WORKERS = int(os.environ.get("BENCH_WORKERS", 4))
YIELDING = os.environ.get("BENCH_YIELD", "off") == "on"
TARGET_LAG = float(os.environ.get("BENCH_TARGET_LAG", 0.005))
FLOOR = int(os.environ.get("BENCH_FLOOR", 1))

counts = {"done": 0}


def spin(loops: int) -> int:
    """Pure-Python work: ``loops`` additions."""
    total = 0
    for i in range(loops):
        total += i
    return total


def calibrate() -> int:
    """The loop count of one step: about ``STEP_SECONDS`` of ``spin`` (median of 7 tries)."""
    probe = 100_000
    timings = []
    for _ in range(7):
        began = time.perf_counter()
        spin(probe)
        timings.append(time.perf_counter() - began)
    return max(1, int(probe * STEP_SECONDS / statistics.median(timings)))


LOOPS = int(os.environ.get("BENCH_LOOPS", 0)) or calibrate()


async def burn() -> None:
    """10 steps of about 5 ms of CPU, awaiting between them; then its successor."""
    for _ in range(STEPS):
        spin(LOOPS)
        await asyncio.sleep(0)
    counts["done"] += 1
    with contextlib.suppress(BackburnerError):  # shutting down: no successor
        background.enqueue(burn)


async def noop(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def fill(request: Request) -> JSONResponse:
    count = int(request.query_params["count"])
    for _ in range(count):
        background.enqueue(burn)
    return JSONResponse({"enqueued": count})


async def read_counts(request: Request) -> JSONResponse:
    yielding = background.stats().yielding
    return JSONResponse(
        {
            "done": counts["done"],
            "loops": LOOPS,
            "yielding": None if yielding is None else background.stats().as_dict()["yielding"],
        }
    )


app = BackburnerMiddleware(
    Starlette(
        routes=[
            Route("/noop", noop),
            Route("/health", noop),
            Route("/fill", fill, methods=["POST"]),
            Route("/counts", read_counts),
        ]
    ),
    workers=WORKERS,
    shutdown_timeout=2.0,
    yield_to_requests=YieldToRequests(target_lag=TARGET_LAG, floor=FLOOR) if YIELDING else False,
)
