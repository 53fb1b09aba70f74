"""``status_app(...)``: the ASGI app that tells clients what became of their jobs.

Every request passes, in order: the route (``GET /{id}``, ``GET /{id}/events``); the
signature, if the URL has one; the lookup; ``authorize(request, info)``, if the signature did
not let it in; then the answer. A request that neither a signature nor ``authorize`` can let
in is refused (403) before the executor is asked anything, with a message saying how to allow.
An id the executor does not know is 404 to whoever may ask: ids are made in sequence, not
secrets, and whether one exists is all a 404 or a 403 tells.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._clock import Clock, SystemClock
from .._errors import NotRunning
from .._executor import Backburner
from .._proxy import current_executor
from .._status import JobStatus
from ._accepted import estimate
from ._body import body_of, dumps
from ._estimate import BOUNDS, check_bounds
from ._events import HEADERS, EventStream
from ._signing import URLSigner

if TYPE_CHECKING:
    from .._info import JobInfo

__all__ = ["Authorize", "StatusApp", "status_app"]

logger = logging.getLogger("backburner")

#: ``authorize(request, info)`` returns (or awaits to) True to let the request see the job.
Authorize = Callable[[Request, "JobInfo"], "bool | Awaitable[bool]"]

_JSON = "application/json"
# Status answers change from one second to the next, and a signed URL is a credential.
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_DENIED = (
    "This status app lets no one in: it was made without authorize= and without secret=. "
    "Give status_app(authorize=<callable(request, info) -> bool>) to decide per job (info.meta "
    "holds the meta= given at enqueue), and/or status_app(secret=...) to serve URLs signed "
    "with app.sign(job_id)."
)
_UNSIGNED = (
    "This status URL is not signed, and this status app has no authorize=: ask for a signed "
    "URL (?expires=...&sig=..., made with app.sign(job_id))."
)


class StatusApp:
    """The status app, to mount: ``app.mount("/status", status_app(authorize=owns_job))``.

    ``GET /{id}`` answers the job's snapshot as JSON: 200 while it is known (with
    ``Retry-After`` until it ends), 404 if it is not, 410 once only its tombstone is left.
    ``GET /{id}/events`` streams its progress and status as Server-Sent Events until it ends.

    :param bg: the executor to ask; by default the one ``background`` finds (the app's
        ``BackburnerMiddleware``, for a request that passes through it).
    :param authorize: ``authorize(request, info) -> bool`` (sync or async): may this request see
        this job? ``info`` is its ``JobInfo``; ``info.meta`` holds what ``options(meta=...)``
        gave at enqueue (the user it belongs to, say). If it raises, the answer is no.
    :param secret: the key that signs status URLs (``sign(job_id)``), at least 32 bytes: a
        request with a valid, unexpired signature for its job id needs no ``authorize``.
    :param interval: seconds between two looks at a job while its events stream (0.01 to 60).
    :param heartbeat: quiet seconds after which a stream sends a comment (1 to 3600), so that
        proxies keep it open.
    :param retry_bounds: ``(low, high)``: the ``Retry-After`` estimates stay within these seconds.
    :param clock: what signatures' expiry is read on: the system clock by default.
    :param show_errors: answer a failed job's ``error`` in full (``"ValueError: no such
        row 42"``, bounded); by default only its type's name (``"ValueError"``): an error's
        message may hold what a client is not to see (a query, a path, a host, a key).

    Without ``authorize`` and without a signed URL, every request is refused (403).
    """

    def __init__(
        self,
        bg: Backburner | None = None,
        *,
        authorize: Authorize | None = None,
        secret: str | bytes | None = None,
        interval: float = 0.5,
        heartbeat: float = 15.0,
        retry_bounds: tuple[float, float] = BOUNDS,
        clock: Clock | None = None,
        show_errors: bool = False,
    ) -> None:
        if bg is not None and not isinstance(bg, Backburner):
            raise TypeError(f"bg must be a Backburner or None, got {type(bg).__name__}")
        if authorize is not None and not callable(authorize):
            raise TypeError(
                "authorize must be a callable taking (request, info) and returning a bool "
                f"(or an awaitable of one), got {type(authorize).__name__}"
            )
        _check_seconds("interval", interval, 0.01, 60.0)
        _check_seconds("heartbeat", heartbeat, 1.0, 3600.0)
        self.executor = bg
        self.authorize = authorize
        self._signer = URLSigner(secret) if secret is not None else None
        self.interval = float(interval)
        self.heartbeat = float(heartbeat)
        self.retry_bounds = check_bounds(retry_bounds)
        self.clock: Clock = clock if clock is not None else SystemClock()
        if not isinstance(show_errors, bool):
            raise TypeError(f"show_errors must be True or False, got {show_errors!r}")
        self.show_errors = show_errors
        self._app = Starlette(
            routes=[
                Route("/{job_id}", self._status, methods=["GET"]),
                Route("/{job_id}/events", self._events, methods=["GET"]),
            ]
        )

    def __repr__(self) -> str:
        ways = ["authorize"] if self.authorize is not None else []
        ways += ["signed URLs"] if self._signer is not None else []
        return f"<backburner StatusApp {' + '.join(ways) or 'denying everyone'}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route ``GET /{id}`` and ``GET /{id}/events``; nothing else is served."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._app(scope, receive, send)

    def sign(self, job_id: str, *, expires_in: float = 600.0) -> str:
        """``expires=...&sig=...``: the query that lets anyone holding it see ``job_id`` (its
        status and its events) for ``expires_in`` seconds. Add it to the status URL::

            f"/status/{job.id}?{statuses.sign(job.id)}"
        """
        if self._signer is None:
            raise ValueError(
                "this status app has no secret to sign with: make it with "
                "status_app(secret=...) (at least 32 random bytes, from your settings)"
            )
        return self._signer.query(job_id, self.clock.now(), expires_in)

    # The routes.

    async def _status(self, request: Request) -> Response:
        found = await self._admit(request)
        if isinstance(found, Response):
            return found
        bg, info = found
        headers = dict(_HEADERS)
        if not info.status.finished:
            headers["Retry-After"] = str(self._retry_after(bg, info))
        return Response(dumps(self._render(info)), 200, headers, _JSON)

    async def _events(self, request: Request) -> Response | EventStream:
        found = await self._admit(request)
        if isinstance(found, Response):
            return found
        bg, info = found
        job_id = info.id

        async def look_up() -> JobInfo | None:
            return await bg.lookup(job_id)

        return EventStream(
            info,
            look_up,
            interval=self.interval,
            heartbeat=self.heartbeat,
            headers=[*HEADERS, (b"x-content-type-options", b"nosniff")],
            render=self._render,
        )

    def _render(self, info: JobInfo) -> dict[str, Any]:
        return body_of(info, show_errors=self.show_errors)

    # Who may see what.

    async def _admit(self, request: Request) -> tuple[Backburner, JobInfo] | Response:
        """The executor and the job's snapshot, or the response that refuses the request."""
        job_id: str = request.path_params["job_id"]
        signed, refusal = self._signature(request, job_id)
        if not signed and self.authorize is None:
            return _error(403, refusal or _DENIED)
        try:
            bg = self.executor if self.executor is not None else current_executor()
            info = await bg.lookup(job_id)
        except NotRunning as exc:
            return _error(503, f"No executor to ask: {exc}", {"Retry-After": "5"})
        if info is None:
            shown = job_id if len(job_id) <= 100 else job_id[:100] + "..."
            return _error(404, f"No job {shown!r} is known here (never, or too long ago).")
        if not signed and not await self._authorized(request, info):
            return _error(403, refusal or "Not allowed to see this job.")
        if info.status is JobStatus.EXPIRED:
            return Response(dumps(self._render(info)), 410, _HEADERS, _JSON)
        return bg, info

    def _signature(self, request: Request, job_id: str) -> tuple[bool, str | None]:
        """(True, None) for a valid signature; else (False, why not, if a URL was signed)."""
        expires, sig = request.query_params.get("expires"), request.query_params.get("sig")
        if expires is None and sig is None:
            unsigned_refused = self._signer is not None and self.authorize is None
            return False, _UNSIGNED if unsigned_refused else None
        if self._signer is None:
            return False, "This status app takes no signed URLs (it was made without secret=)."
        refusal = self._signer.refusal(job_id, expires, sig, self.clock.now())
        return refusal is None, None if refusal is None else f"Not allowed: {refusal}."

    async def _authorized(self, request: Request, info: JobInfo) -> bool:
        if self.authorize is None:
            return False
        try:
            answer = self.authorize(request, info)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:
            logger.exception("the status app's authorize failed; the request was refused")
            return False
        if answer is not True and answer is not False:
            logger.error(
                "the status app's authorize returned %r, not a bool; the request was refused",
                answer,
            )
            return False
        return answer

    def _retry_after(self, bg: Backburner, info: JobInfo) -> int:
        due_in = None
        if info.status is JobStatus.SCHEDULED or info.status is JobStatus.RETRYING:
            due_in = _due_in(bg, info.id)
        return estimate(
            bg,
            info.status,
            info.queue,
            info.progress,
            info.started_at,
            position=info.position,
            due_in=due_in,
            bounds=self.retry_bounds,
        )


def _due_in(bg: Backburner, job_id: str) -> float | None:
    """Seconds until a scheduled or retrying job is due, from its handle (a snapshot has no
    due time), so that its client asks again then, not every couple of seconds meanwhile.
    The handle is read on the executor's loop thread, as it must be; elsewhere: not known."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if bg.loop is not loop:
        return None
    job = bg.find_job(job_id)
    if job is None or job.run_at is None:
        return None
    return job.run_at - bg.clock.now()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps({"error": message}), status, {**_HEADERS, **(headers or {})}, _JSON)


def _check_seconds(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be from {low:g} to {high:g} seconds, got {value!r}")


#: The status app, to mount (see ``StatusApp``): ``status_app(...)`` is ``StatusApp(...)``,
#: declared once.
status_app = StatusApp
