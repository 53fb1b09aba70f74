"""The two hand-written executors that ``core.py`` measures backburner against.

Both are an ``asyncio.Queue`` and ``workers`` worker tasks, with the same calling convention as
``Backburner`` (``enqueue(fn, *args)``, ``await aenqueue(fn, *args)``, ``await join()``), so the
benchmark drives all three with the same loop and only the executors differ.

- ``TaskPerJob`` (baseline a): each job runs as its own task, in a copy of the context captured
  at enqueue. The least that per-job cancellation and context isolation can cost.
- ``Inline`` (baseline b): each worker awaits the job's coroutine itself: no task, no context.
  The bare floor of running a coroutine function from a queue.

Neither checks arguments, keeps a handle, counts anything or survives a failure beyond going on
to the next job: they are yardsticks, not executors.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Inline", "TaskPerJob"]

AsyncFn = Callable[..., Awaitable[Any]]
Q = TypeVar("Q", bound="_QueueOfWorkers")


class _QueueOfWorkers:
    """An ``asyncio.Queue`` of ``max_pending`` items and ``workers`` tasks that consume it."""

    def __init__(self, *, workers: int, max_pending: int) -> None:
        self.workers = workers
        self.queue: asyncio.Queue[Any] = asyncio.Queue(max_pending)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]
        await asyncio.sleep(0)  # every worker now waits in queue.get()

    async def join(self) -> None:
        await self.queue.join()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def __aenter__(self: Q) -> Q:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _work(self) -> None:
        raise NotImplementedError


class TaskPerJob(_QueueOfWorkers):
    """Baseline (a): a task per job, in the context captured when it was enqueued."""

    def enqueue(self, fn: AsyncFn, /, *args: Any) -> None:
        self.queue.put_nowait((fn, args, contextvars.copy_context()))

    async def aenqueue(self, fn: AsyncFn, /, *args: Any) -> None:
        await self.queue.put((fn, args, contextvars.copy_context()))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self.queue
        while True:
            fn, args, context = await queue.get()
            if sys.version_info >= (3, 11):
                task = loop.create_task(fn(*args), context=context)
            else:  # 3.10: create_task has no context=; the task copies the one it starts in
                task = context.run(loop.create_task, fn(*args))
            try:  # noqa: SIM105 - contextlib.suppress would cost an object per job
                await task
            except Exception:
                pass
            queue.task_done()


class Inline(_QueueOfWorkers):
    """Baseline (b): the worker awaits each job itself; no task, no context of its own."""

    def enqueue(self, fn: AsyncFn, /, *args: Any) -> None:
        self.queue.put_nowait((fn, args))

    async def aenqueue(self, fn: AsyncFn, /, *args: Any) -> None:
        await self.queue.put((fn, args))

    async def _work(self) -> None:
        queue = self.queue
        while True:
            fn, args = await queue.get()
            try:  # noqa: SIM105 - contextlib.suppress would cost an object per job
                await fn(*args)
            except Exception:
                pass
            queue.task_done()
