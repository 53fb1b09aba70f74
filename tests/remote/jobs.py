"""The jobs of the behaviour suite, registered by name: run in this process or by a taskiq worker.

Attempts are counted per token in the process that runs the job (one worker process in the
tests), so a job can fail a given number of times before it succeeds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backburner import job

_attempts: dict[str, int] = {}


@job(name="remote.add")
async def add(a: int, b: int) -> int:
    """An async job with a result."""
    return a + b


@job(name="remote.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """A sync job that returns what it was given (run in a thread either way)."""
    return {"args": list(args), "kwargs": kwargs}


@job(name="remote.fail")
async def fail(message: str) -> None:
    """A job that always fails."""
    raise ValueError(message)


@job(name="remote.flaky", retries=2, backoff=0.01, jitter=0)
async def flaky(token: str, failures: int) -> int:
    """Fail the first ``failures`` attempts (per token), then return the attempt number."""
    attempt = _attempts[token] = _attempts.get(token, 0) + 1
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} of {token} fails")
    return attempt


@job(name="remote.stamp")
async def stamp() -> float:
    """The wall-clock time the job ran."""
    return time.time()


@job(name="remote.slow", timeout=0.2)
async def slow(seconds: float) -> str:
    """A job that takes longer than its timeout."""
    await asyncio.sleep(seconds)
    return "finished"


@job(name="remote.record")
def record(path: str, token: str) -> None:
    """Append ``token`` to the file at ``path``: the side effect the outage test counts."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(token + "\n")
