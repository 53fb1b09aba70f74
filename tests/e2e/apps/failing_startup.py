"""A Starlette app whose own startup enqueues a job, then raises: uvicorn must exit with 3."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from backburner import BackburnerMiddleware, background

from ._events import record, watch_backburner_log

watch_backburner_log()


async def never_runs(key: str) -> None:
    record("started", key=key)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    job = background.enqueue(never_runs, "from-failed-startup")
    record("enqueued", key="from-failed-startup", id=job.id)
    await asyncio.sleep(0)
    raise RuntimeError("e2e: the database at db.invalid is unreachable")
    yield  # pragma: no cover - the generator must be one


app = Starlette(lifespan=lifespan)
app.add_middleware(BackburnerMiddleware, workers=2, shutdown_timeout=1.0)
