"""Fixtures for the remote engine: one Redis, one ``taskiq worker`` and one scheduler a session.

The behaviour suite runs each test twice, on the in-process engine and on the taskiq engine
(``engine`` fixture); the taskiq runs share the session's Redis and worker processes.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from backburner import Backburner
from backburner.taskiq import TaskiqEngine, redis_engine

from ._processes import RedisServer, TaskiqProcess


class Remote:
    """The session's Redis, worker and scheduler, and a way to build engines for them."""

    def __init__(self, redis: RedisServer, worker: TaskiqProcess, scheduler: TaskiqProcess):
        self.redis = redis
        self.worker = worker
        self.scheduler = scheduler

    def engine(self, **settings: Any) -> TaskiqEngine:
        """An engine configured like the worker's (``tests/remote/worker_app.py``)."""
        return redis_engine(self.redis.url, **settings)


@pytest.fixture(scope="session")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """Redis (no persistence), one worker process and the scheduler, for the whole session."""
    workdir = tmp_path_factory.mktemp("remote")
    redis = RedisServer(workdir / "redis")
    redis.start()
    started: list[TaskiqProcess] = []
    try:
        worker = TaskiqProcess("worker", redis.url, workdir, ["--workers", "1"])
        started.append(worker)
        scheduler = TaskiqProcess("scheduler", redis.url, workdir, ["--update-interval", "1"])
        started.append(scheduler)
        yield Remote(redis, worker, scheduler)
    finally:
        for process in started:
            process.stop()
        redis.stop(signal.SIGTERM)


@pytest.fixture(params=["local", "taskiq"])
def engine_name(request: pytest.FixtureRequest) -> str:
    """Which engine runs the behaviour suite's jobs."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def executor(engine_name: str, request: pytest.FixtureRequest) -> Any:
    """``async with executor() as bg``: a Backburner on the engine under test."""

    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[Backburner]:
        if engine_name == "taskiq":
            remote: Remote = request.getfixturevalue("remote")
            settings["engine"] = remote.engine()
        async with Backburner(**settings) as bg:
            yield bg

    return make


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory the test and the worker (same machine) can both write to."""
    return tmp_path
