"""Pausing and resuming queues: which are paused, kept across a stop and a start of the executor.

A pause may be asked for from any thread and before the queues exist: it is remembered here
and applied to the queue on the event loop's thread (at once, or when the queue is made).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ShuttingDown
from ._ports import Engine, Queue

__all__ = ["Pauses"]


class Pauses:
    """The executor's paused queues."""

    def __init__(
        self, queue_names: Callable[[], list[str]], engine_of: Callable[[str], Engine | None]
    ) -> None:
        """``queue_names()`` lists the configured queues; ``engine_of(name)`` a queue's engine."""
        self._queue_names = queue_names
        self._engine_of = engine_of
        self.names: set[str] = set()

    def check(self, queue: str) -> None:
        """Raise ``ValueError`` if there is no queue named ``queue``."""
        names = self._queue_names()
        if queue not in names:
            raise ValueError(f"no queue named {queue!r}; this executor has {sorted(names)}")

    def pause(
        self, queue: str, queues: Mapping[str, Queue], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        """Pause ``queue`` (on ``loop``'s thread, sent there if called from another)."""
        self.check(queue)
        engine = self._engine_of(queue)
        if engine is not None:
            raise ValueError(
                f"queue {queue!r} sends its jobs to {engine.name}, whose workers run them: "
                f"pause them there (a remote queue has no workers here to hold)"
            )
        _on_loop(loop, self._pause_here, queue, queues)

    def resume(
        self,
        queue: str,
        queues: Mapping[str, Queue],
        loop: asyncio.AbstractEventLoop | None,
        *,
        draining: bool,
        dispatch: Callable[[], bool],
    ) -> None:
        """Undo ``pause``; the waiting jobs start now if ``dispatch()`` says the executor runs."""
        self.check(queue)
        if draining and queue in self.names:
            raise ShuttingDown(
                f"the executor is shutting down: queue {queue!r} stays paused and its waiting "
                f"jobs are reported as not started"
            )
        _on_loop(loop, self._resume_here, queue, queues, dispatch)

    def _pause_here(self, queue: str, queues: Mapping[str, Queue]) -> None:
        self.names.add(queue)
        if queue in queues:
            queues[queue].pause()

    def _resume_here(
        self, queue: str, queues: Mapping[str, Queue], dispatch: Callable[[], bool]
    ) -> None:
        self.names.discard(queue)
        if queue in queues:
            queues[queue].resume(dispatch=dispatch())


def _on_loop(loop: asyncio.AbstractEventLoop | None, call: Callable[..., None], *args: Any) -> None:
    """``call(*args)`` now on ``loop``'s thread (or with no loop), else sent to that thread."""
    if loop is not None and not loop.is_closed():
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if not here:
            loop.call_soon_threadsafe(call, *args)
            return
    call(*args)
