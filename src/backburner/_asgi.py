"""``BackburnerMiddleware``: ties an executor to an ASGI app's lifespan and requests.

The lifespan order is the point of this module:

* startup: the executor opens (accepts jobs) before the app's own startup runs, and starts
  running them only after the app reports ``startup.complete``: jobs may need what startup
  builds (a database pool, say);
* shutdown: when the server asks, the executor drains *first*, within ``shutdown_timeout``,
  and only then does the app hear of the shutdown, so its pools stay open while jobs finish;
* uvicorn does not time out the shutdown step and, after SIGTERM, ends the process right after
  ``shutdown.complete``: so the deadline, the cancellation and the report all happen here,
  before that message is sent;
* exactly one ``startup.*`` and one ``shutdown.*`` message reach the server, whatever the app
  does: supports the lifespan, ignores it (raises or returns at once), or fails its startup.

And for requests: a ``QueueFull`` that reaches the middleware before the response started is
answered ``503 Service Unavailable`` with ``Retry-After``, and counted in one log line a second
per queue (``queue_full_handler`` does the same as a Starlette or FastAPI exception handler).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._context import current_executor_var, name_executor, request_enqueue_var
from ._errors import QueueFull
from ._executor import Backburner
from .logs import install_fallback

if TYPE_CHECKING:  # (imported when used: `import backburner` stays light)
    from starlette.requests import Request
    from starlette.responses import Response
    from typing_extensions import Unpack

    from ._settings import BackburnerSettings

__all__ = ["BackburnerMiddleware", "queue_full_handler"]

logger = logging.getLogger("backburner")


class BackburnerMiddleware:
    """Run background jobs in the web server's own process, for the app it wraps.

    ::

        app.add_middleware(BackburnerMiddleware, workers=8, max_pending=10_000)

    Then ``background.enqueue(fn, *args)`` in any endpoint. The keyword arguments are those of
    ``Backburner``; or pass ``executor=`` a ``Backburner`` of your own (one per app).

    ``queue_full_retry_after``: a request that fails with ``QueueFull`` (a full queue, before
    its response started) is answered ``503 Service Unavailable`` with this ``Retry-After``
    (seconds), and refusals are logged at most once a second per queue, with their count,
    instead of a 500 and a traceback each. None: ``QueueFull`` propagates like any exception.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        executor: Backburner | None = None,
        queue_full_retry_after: int | None = 1,
        **settings: Unpack[BackburnerSettings],
    ) -> None:
        self.app = app
        # Starlette builds its middleware inside the first lifespan call, where an exception
        # would read as "lifespan unsupported" and the server would run with no executor. A bad
        # setting is kept and reported as a failed startup instead (uvicorn then exits 3).
        self.config_error: Exception | None = None
        if executor is not None and settings:  # reported at startup, as a bad setting is
            self.config_error = TypeError(
                f"BackburnerMiddleware takes executor= or the executor's settings "
                f"({', '.join(sorted(settings))}), not both: give them to Backburner(...)"
            )
        if executor is None:
            try:
                executor = Backburner(**settings)
            except (TypeError, ValueError) as exc:
                self.config_error = exc
                executor = Backburner()
        elif not isinstance(executor, Backburner):
            raise TypeError(f"executor must be a Backburner, got {type(executor).__name__}")
        self.executor = executor
        self.enqueue = executor.enqueue  # bound once: each request hands it to `background`
        # With yield_to_requests: told how long each request took to its response's start.
        self.yielding = executor.yielding if executor.yielding.config is not None else None
        self.queue_full_retry_after: int | None = None
        self.refusals = _Refusals()
        try:
            self.queue_full_retry_after = _check_retry_after(queue_full_retry_after)
        except (TypeError, ValueError) as exc:
            self.config_error = self.config_error or exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _Lifespan(self).run(scope, receive, send)
            return
        if self.config_error is not None:
            raise self.config_error
        tokens = name_executor(self.executor, self.enqueue)
        try:
            if scope["type"] == "http" and (
                self.queue_full_retry_after is not None or self.yielding is not None
            ):
                await self._http(scope, receive, send, self.queue_full_retry_after)
            else:
                await self.app(scope, receive, send)
        finally:
            request_enqueue_var.reset(tokens[1])
            current_executor_var.reset(tokens[0])

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, retry_after: int | None
    ) -> None:
        started = False
        yielding = self.yielding
        began = 0.0
        if yielding is not None:
            yielding.request_arrived()
            began = time.monotonic()

        async def watched_send(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                if yielding is not None:  # what the request waited: the pressure's signal
                    yielding.request_answered(time.monotonic() - began)
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except QueueFull as exc:
            if started or retry_after is None:  # too late for another answer, or not ours
                raise
            self.refusals.count(exc, retry_after)
            body = _busy_text(retry_after).encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def _check_retry_after(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"queue_full_retry_after must be a whole number of seconds (or None), got "
            f"{type(value).__name__} {value!r}"
        )
    if not 0 <= value <= 3600:
        raise ValueError(f"queue_full_retry_after must be 0 to 3600 seconds, got {value}")
    return value


async def queue_full_handler(request: Request, exc: Exception) -> Response:
    """Answer a request that failed with ``QueueFull``: ``503 Service Unavailable``, with
    ``Retry-After: 1``, the refusal counted in one log line a second per queue.

    For apps that run the executor without ``BackburnerMiddleware`` (which does this itself)::

        Starlette(..., exception_handlers={QueueFull: queue_full_handler})
        FastAPI(..., exception_handlers={QueueFull: queue_full_handler})
    """
    if not isinstance(exc, QueueFull):
        raise TypeError(f"queue_full_handler handles QueueFull, got {type(exc).__name__}")
    from starlette.responses import PlainTextResponse

    _handler_refusals.count(exc, 1)
    return PlainTextResponse(_busy_text(1), status_code=503, headers={"Retry-After": "1"})


def _busy_text(retry_after: int) -> str:
    # What a client is told: nothing of the inside (queue names, sizes), only when to retry.
    return (
        f"503 Service Unavailable: the server is too busy to take this request now; "
        f"retry after {retry_after} seconds.\n"
    )


class _Refusals:
    """Requests answered 503 for a full queue: one log line a second at most, per queue.

    The first refusal is logged at once; the ones after it within the second are counted and
    logged when the second is over, by a timer on the loop, so a burst's last count is not
    lost and a flood of refusals costs a line a second, not a traceback per request.
    """

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._lock = threading.Lock()  # (several event loops, TestClients, may meet here)
        self._last: dict[str, float] = {}  # queue -> time.monotonic() of its last line
        self._counts: dict[str, int] = {}  # queue -> refusals not logged yet
        self._latest: dict[str, tuple[QueueFull, int]] = {}  # queue -> (error, Retry-After)
        # queue -> the loop and timer that will log the count (the loop may have closed since:
        # a TestClient's does, and its timer never fires; a new one is set then)
        self._timers: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]] = {}

    def count(self, exc: QueueFull, retry_after: int) -> None:
        """Count one refusal: log it now, or with the others at the end of the second."""
        now = time.monotonic()
        queue = exc.queue
        with self._lock:
            count = self._counts.get(queue, 0) + 1
            wait = self._last.get(queue, -math.inf) + self.every - now
            if wait <= 0:
                self._last[queue], self._counts[queue] = now, 0
                self._latest.pop(queue, None)
            else:
                self._counts[queue] = count
                self._latest[queue] = (exc, retry_after)
                loop, _ = self._timers.get(queue, (None, None))
                if loop is None or loop.is_closed() or not loop.is_running():
                    loop = asyncio.get_running_loop()
                    self._timers[queue] = (loop, loop.call_later(wait, self.flush, queue))
        if wait <= 0:
            _log_refusals(count, exc, retry_after)

    def flush(self, queue: str) -> None:
        """Log the refusals of ``queue`` not logged yet, if any."""
        with self._lock:
            count = self._counts.get(queue, 0)
            latest = self._latest.pop(queue, None)
            self._timers.pop(queue, None)
            if latest is not None:
                self._last[queue], self._counts[queue] = time.monotonic(), 0
        if count and latest is not None:
            _log_refusals(count, *latest)

    def flush_all(self) -> None:
        """Log every count not logged yet (at shutdown: its timer may never fire)."""
        for queue in list(self._latest):
            _, timer = self._timers.get(queue, (None, None))
            if timer is not None:
                timer.cancel()
            self.flush(queue)


_handler_refusals = _Refusals()  # queue_full_handler's: not tied to one middleware


def _log_refusals(count: int, exc: QueueFull, retry_after: int) -> None:
    logger.warning(
        "answered %d requests with 503 Service Unavailable (Retry-After: %d) since the last "
        "such line, at most one a second: %s",
        count,
        retry_after,
        exc,
        extra={"backburner_queue": exc.queue, "backburner_refused": count},
    )


class _Lifespan:
    """One run of the lifespan protocol between the server, the executor and the app."""

    def __init__(self, middleware: BackburnerMiddleware) -> None:
        self.app = middleware.app
        self.executor = middleware.executor
        self.refusals = middleware.refusals
        self.config_error = middleware.config_error
        self.app_got_startup = False
        self.app_got_shutdown = False
        self.startup_sent = False
        self.shutdown_sent = False
        self.startup_failed = False
        self.own_failure: str | None = None  # our start failed after the app's succeeded
        self.open_failure: Exception | None = None  # our open failed (a bad journal, say)

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.receive, self.send = receive, send
        if self.config_error is not None:
            await receive()
            await self._send_startup_failed(f"BackburnerMiddleware: {self.config_error}")
            return
        tokens = name_executor(self.executor, self.executor.enqueue)  # startup may enqueue
        app_error: Exception | None = None
        try:
            await self.app(scope, self._app_receive, self._app_send)
        except Exception as exc:
            app_error = exc
        finally:
            request_enqueue_var.reset(tokens[1])
            current_executor_var.reset(tokens[0])
        await self._finish(app_error)
        self.refusals.flush_all()  # the counts of the last second, whose timers may never fire

    async def _app_receive(self) -> Message:
        if self.own_failure is not None:  # let the app close what its startup opened
            self.app_got_shutdown = True
            return {"type": "lifespan.shutdown"}
        message = await self.receive()
        if message["type"] == "lifespan.startup":
            self.app_got_startup = True
            install_fallback()  # under a plain `uvicorn app:app`, our records reach stderr
            try:
                await self.executor.open()
            except Exception as exc:
                # The app hears it as its receive() raising; the server hears our own words.
                self.open_failure = exc
                raise
        elif message["type"] == "lifespan.shutdown":
            self.app_got_shutdown = True
            await self.executor.aclose()  # drain first: the app's resources are still open
        return message

    async def _app_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            try:
                await self.executor.start()
            except Exception as exc:
                logger.exception("the executor failed to start")
                self.own_failure = f"backburner could not start: {exc}"
                return  # the app gets a shutdown next; the server gets startup.failed after
        elif kind == "lifespan.startup.failed":
            self.startup_failed = True
            await self.executor.aclose()  # report anything the failed startup enqueued
        elif kind.startswith("lifespan.shutdown.") and self.own_failure is not None:
            return  # the app's reply to our own shutdown: the server never asked for it
        if kind.startswith("lifespan.startup."):
            self.startup_sent = True
        elif kind.startswith("lifespan.shutdown."):
            self.shutdown_sent = True
        await self.send(message)

    async def _finish(self, app_error: Exception | None) -> None:
        """Complete whatever part of the protocol the app left undone."""
        if self.open_failure is not None and not self.startup_sent:
            await self._send_startup_failed(f"backburner could not start: {self.open_failure}")
            return
        if self.own_failure is not None:
            await self.executor.aclose()  # report what the app's startup enqueued
            await self._send_startup_failed(self.own_failure)
            return
        if not self.startup_sent:
            if self.app_got_startup:  # the app took the startup and ended without a word
                await self.executor.aclose()
                reason = f"{type(app_error).__name__}: {app_error}" if app_error else "returned"
                await self._send_startup_failed(f"the application's startup failed: {reason}")
                return
            # The app does not speak the lifespan protocol: we run it for the executor alone.
            if app_error is not None:
                logger.debug("app has no lifespan support (%r)", app_error)
                app_error = None  # not a failure: the protocol is ours alone from here
            await self.receive()
            try:
                await self.executor.start()
            except Exception as exc:
                logger.exception("the executor failed to start")
                await self._send_startup_failed(f"backburner could not start: {exc}")
                return
            self.startup_sent = True
            await self.send({"type": "lifespan.startup.complete"})
        if self.startup_failed or self.shutdown_sent:
            if app_error is not None and not self.startup_failed:
                logger.error(
                    "the application's lifespan raised after shutdown",
                    exc_info=app_error,
                )
            return
        if app_error is not None:
            logger.error("the application's lifespan raised", exc_info=app_error)
        if not self.app_got_shutdown:
            await self.receive()  # wait for the server's shutdown, then drain
            await self.executor.aclose()
        self.shutdown_sent = True
        if app_error is not None:
            message = f"the application's lifespan failed: {type(app_error).__name__}: {app_error}"
            await self.send({"type": "lifespan.shutdown.failed", "message": message})
        else:
            await self.send({"type": "lifespan.shutdown.complete"})

    async def _send_startup_failed(self, message: str) -> None:
        self.startup_sent = True
        await self.send({"type": "lifespan.startup.failed", "message": message})
