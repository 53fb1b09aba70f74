"""``GET /{id}/events``: a job's progress and status as Server-Sent Events, until it ends.

The stream looks the job up every ``interval`` seconds and sends an event when something a
client shows has changed, each event's data the whole snapshot (as ``GET /{id}`` gives it):

* ``status``: first, and whenever the status or the attempt changes;
* ``progress``: when the progress or the place in the queue changes;
* ``end``: the last event, with the final snapshot (``null`` if the job is no longer known);
  the stream then closes. Close the ``EventSource`` on it, or the browser connects again.

A comment line goes out after ``heartbeat`` quiet seconds, so proxies and load balancers
keep the connection open. The stream also ends when the client goes away, and when the
uvicorn serving this process begins its shutdown (uvicorn waits for open responses before
the lifespan shutdown, so a stream that lasted as long as its job would hold it up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.types import Receive, Scope, Send

from .._budget import running_uvicorn
from .._errors import BackburnerError
from ._body import body_of, dumps

if TYPE_CHECKING:
    from .._info import JobInfo

__all__ = ["EventStream", "event", "server_stopping"]

logger = logging.getLogger("backburner")

#: Sent on every stream's response.
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx buffers proxied responses unless told not to: events would arrive in lumps.
    (b"x-accel-buffering", b"no"),
]
_HEARTBEAT = b": keep-alive\n\n"
# How long a browser waits to connect again when a stream drops without its end event (the
# server restarted, a proxy cut it): first thing on every stream.
_RECONNECT = b"retry: 2000\n\n"


def event(name: str, data: Any, event_id: int) -> bytes:
    """One event in the wire format: its name, id and JSON data (one line: no newline in it)."""
    return b"event: %s\nid: %d\ndata: %s\n\n" % (name.encode(), event_id, dumps(data))


def server_stopping() -> Callable[[], bool]:
    """A test of whether the uvicorn serving this process was asked to stop (False elsewhere)."""
    server = running_uvicorn()
    if server is None or not hasattr(server, "should_exit"):
        return lambda: False
    return lambda: bool(getattr(server, "should_exit", False))


class EventStream:
    """The ASGI response that streams one job's events (see the module)."""

    def __init__(
        self,
        first: JobInfo,
        look_up: Callable[[], Awaitable[JobInfo | None]],
        *,
        interval: float,
        heartbeat: float,
        headers: list[tuple[bytes, bytes]],
        render: Callable[[JobInfo], dict[str, Any]] = body_of,
    ) -> None:
        self.first = first
        self.render = render  # a snapshot's JSON object (the app's: errors shown or not)
        self.look_up = look_up
        self.interval = interval
        self.heartbeat = heartbeat
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        if scope.get("method") == "HEAD":  # no body: nothing to stream, nothing to hold open
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        gone: list[bool] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_until_disconnect, receive, tasks.cancel_scope, gone)
            try:
                await self._stream(send)
            finally:
                tasks.cancel_scope.cancel()
        if not gone:  # (a client that went away has no body left to end)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Send) -> None:
        stopping = server_stopping()
        info: JobInfo | None = self.first
        sent_status: tuple[Any, ...] | None = None
        sent_progress: tuple[Any, ...] | None = None
        event_id = 0
        await send(_body(_RECONNECT))
        quiet_since = time.monotonic()
        while True:
            if info is None:
                await send(_body(event("end", None, event_id + 1)))
                return
            if info.status.finished:  # (an expired tombstone too)
                await send(_body(event("end", self.render(info), event_id + 1)))
                return
            status, progress = (info.status, info.attempt), (info.progress, info.position)
            name = None
            if status != sent_status:
                name = "status"
            elif progress != sent_progress:
                name = "progress"
            if name is not None:
                sent_status, sent_progress = status, progress
                event_id += 1
                await send(_body(event(name, self.render(info), event_id)))
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.heartbeat:
                await send(_body(_HEARTBEAT))
                quiet_since = time.monotonic()
            if stopping():
                return
            await anyio.sleep(self.interval)
            try:
                info = await self.look_up()
            except BackburnerError as exc:  # the executor stopped (NotRunning): nothing to tell
                logger.debug("status events of job %s end: %s", self.first.id, exc)
                return


def _body(chunk: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope, gone: list[bool]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.append(True)
            scope.cancel()
            return
