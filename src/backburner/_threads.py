"""The threads that run sync jobs.

Why not ``anyio.to_thread``: its worker threads are not daemon threads, so a sync job abandoned
at shutdown (it cannot be interrupted) would hold the interpreter open at exit until the job
returned, however long that is. These threads are daemons: a job left behind dies with the
process, after it was reported. Each thread still registers as an anyio worker thread, so a
sync job can call back into the loop with ``anyio.from_thread.run(...)``.

Bounding is not done here: each queue holds an ``anyio.CapacityLimiter`` token for as long as
an attempt of one of its jobs occupies a thread (see ``_queue.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ThreadPool"]

try:  # anyio's own marker for "this thread works for that event loop"
    from anyio._backends._asyncio import AsyncIOBackend
    from anyio._core._eventloop import claim_worker_thread

    def _claim(loop: asyncio.AbstractEventLoop) -> contextlib.AbstractContextManager[Any]:
        return claim_worker_thread(AsyncIOBackend, loop)

except ImportError:  # pragma: no cover - a future anyio moved it; from_thread then needs a token

    def _claim(loop: asyncio.AbstractEventLoop) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


#: Called on the event loop's thread when a call ends: (result, None) or (None, exception).
OnDone = Callable[[Any, "BaseException | None"], None]

_Work = tuple[
    asyncio.AbstractEventLoop,
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
    OnDone,
]


class ThreadPool:
    """Daemon threads, started when all are busy and retired after ``idle_timeout`` seconds."""

    def __init__(self, name: str, idle_timeout: float = 10.0) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def run(
        self,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        on_done: OnDone,
    ) -> None:
        """Call ``fn(*args, **kwargs)`` in ``context`` on a thread, then ``on_done`` on ``loop``.

        ``on_done`` runs whenever the call ends, even long after its job was abandoned.
        """
        with self._lock:
            # Claiming an idle thread and queueing its work happen under one lock, so a thread
            # that times out at this moment sees the work and stays (see _serve).
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                self._started += 1
                spawn = True
            self._work.put((loop, context, fn, args, kwargs, on_done))
        if spawn:
            thread = threading.Thread(
                target=self._serve, name=f"backburner-{self._name}-{self._started}", daemon=True
            )
            thread.start()

    def _serve(self) -> None:
        while True:
            try:
                work = self._work.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._work.empty():
                        self._idle -= 1
                        return
                continue
            _call(*work)
            with self._lock:
                self._idle += 1


def _call(
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    on_done: OnDone,
) -> None:
    result: Any = None
    error: BaseException | None = None
    try:
        with _claim(loop):
            result = context.run(fn, *args, **kwargs)
    except BaseException as exc:  # handed to the job's task, which reports it
        error = exc
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to tell
        loop.call_soon_threadsafe(on_done, result, error)
