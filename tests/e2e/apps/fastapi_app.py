"""A FastAPI app: the same middleware, routes that enqueue (through `background`, and through the
executor given as a dependency), and the stats."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from backburner import Backburner, BackburnerMiddleware, background
from backburner.fastapi import BackburnerDep

from ._events import record, watch_backburner_log

watch_backburner_log()


async def greet(key: str) -> None:
    record("started", key=key)
    await asyncio.sleep(0.01)
    record("finished", key=key)


def greet_in_thread(key: str) -> None:
    record("started", key=key)
    record("finished", key=key)


app = FastAPI()
app.add_middleware(BackburnerMiddleware, workers=2, shutdown_timeout=2.0)


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@app.post("/async")
async def enqueue_async(key: str) -> dict[str, str]:
    job = background.enqueue(greet, key)
    record("enqueued", key=key, id=job.id)
    return {"id": job.id}


@app.post("/sync")
def enqueue_sync(key: str) -> dict[str, str]:
    job = background.enqueue(greet_in_thread, key)
    record("enqueued", key=key, id=job.id)
    return {"id": job.id}


@app.post("/dependency")
async def enqueue_through_the_dependency(key: str, bg: BackburnerDep) -> dict[str, str]:
    assert isinstance(bg, Backburner)
    job = bg.enqueue(greet, key)
    record("enqueued", key=key, id=job.id)
    return {"id": job.id}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return background.stats().as_dict()
