"""``dashboard(...)``: the ASGI app to mount, its pages, its JSON API and its metrics.

Every request passes, in order: the ``Host`` check, authentication, then the route; every
response gets the security headers. Mutating routes are one POST route, ``api/actions/...``,
which also refuses read-only dashboards and cross-site requests (``_security.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .._errors import NotRunning
from .._executor import Backburner
from .._proxy import current_executor
from .._status import JobStatus
from ._api import ACTIONS, ActionError, Views
from ._auth import AuthCallable, BasicAuth, Guard
from ._box import act_elsewhere, box_view, dead_elsewhere, journal_row
from ._metrics import CONTENT_TYPE, render_metrics
from ._params import (
    LIMIT,
    MINUTES,
    OFFSET,
    POLL,
    TIMED_OFFSET,
    BadParameter,
    Range,
    read_float,
    read_int,
)
from ._present import DEFAULT_REDACT, Presenter, RedactHook, RedactText, truncate
from ._security import CSRF_FIELD, SECURITY_HEADERS, HostCheck, csrf_refusal, new_csrf_token

__all__ = ["Dashboard", "dashboard"]

_ELSEWHERE_LIMIT = 100  # other processes' dead jobs shown on the dead page

logger = logging.getLogger("backburner")

_MAX_BODY = 16 * 1024  # an action's form is a few fields
_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_HEADER_NAMES = {name for name, _ in _HEADERS}


class Dashboard:
    """The dashboard's ASGI app: ``dashboard(...)`` makes one (see ``__init__``)."""

    def __init__(
        self,
        executor: Backburner | None = None,
        *,
        auth: BasicAuth | tuple[str, str] | AuthCallable | None = None,
        insecure_local: bool = False,
        read_only: bool = False,
        allowed_hosts: Iterable[str] | None = None,
        redact: Iterable[str] = DEFAULT_REDACT,
        redact_hook: RedactHook | None = None,
        redact_text: RedactText | None = None,
        poll_interval: float = 2.0,
        title: str = "backburner",
        show_results: bool = False,
    ) -> None:
        """The dashboard, to mount: ``app.mount("/backburner", dashboard(auth=("admin", pw)))``.

        :param executor: the executor to show; by default the one ``background`` finds (the app's
            ``BackburnerMiddleware``, for a request that passes through it). The dashboard never
            starts or stops it.
        :param auth: who may see it: ``(username, password)`` or a ``BasicAuth`` for HTTP Basic,
            or a callable ``auth(request) -> bool`` (sync or async) for your own sessions. Without
            it every request is refused (403).
        :param insecure_local: for development only: no credentials, but only clients on this
            machine (127.0.0.1, ::1) and only ``localhost`` host names. Not with ``auth``.
        :param read_only: show everything, offer no action, and refuse every action (403).
        :param allowed_hosts: the host names (``*.example.com`` patterns too) this dashboard
            answers; other ``Host`` headers get 400. By default any, or with ``insecure_local``
            only ``localhost``, ``127.0.0.1`` and ``::1``.
        :param redact: argument names whose values are masked wherever arguments show, matched as
            parts of a name (whole words for names of 4 letters or fewer), ignoring case, ``-``
            and ``_`` (keyword arguments, positional ones by parameter name, keys of dicts passed
            as arguments, fields of dataclasses, query parameters written in strings). Besides,
            dataclass fields declared ``repr=False``, URL passwords and ``Authorization``,
            ``Bearer`` and ``Basic`` credentials written in strings are always masked.
        :param redact_hook: ``redact_hook(job, args, kwargs) -> (args, kwargs)``, what to show of a
            job's arguments after ``redact`` masked them (mask more, or replace objects).
        :param redact_text: ``redact_text(job, text) -> text``, what to show of a job's error
            message, traceback, unique key and return value, after the values ``redact`` masked
            in its arguments were masked there too (error text can hold anything: a query, a
            token, a path).
        :param poll_interval: seconds between live updates of an open page (1 to 60; a page's
            ``?poll=`` overrides it within the same bounds, ``?poll=0`` stops them).
        :param title: the name in the page title and header.
        :param show_results: show a succeeded job's return value on its page, masked like its
            arguments (``redact``, ``redact_text``). Off by default: a result can hold what no
            one watching the dashboard should read.
        """
        try:
            import jinja2
        except ImportError:  # pragma: no cover - the extra is installed in development
            raise ImportError(
                "the dashboard needs Jinja2: pip install 'backburner[dashboard]'"
            ) from None
        if executor is not None and not isinstance(executor, Backburner):
            raise TypeError(f"executor must be a Backburner, got {type(executor).__name__}")
        if not isinstance(read_only, bool):
            raise TypeError(f"read_only must be a bool, got {read_only!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
            raise TypeError(f"poll_interval must be a number of seconds, got {poll_interval!r}")
        if not POLL.low <= poll_interval <= POLL.high:
            raise ValueError(
                f"poll_interval must be from {POLL.low:g} to {POLL.high:g} seconds, "
                f"got {poll_interval!r}"
            )
        if not isinstance(title, str) or not title:
            raise TypeError(f"title must be a non-empty str, got {title!r}")
        if not isinstance(show_results, bool):
            raise TypeError(f"show_results must be a bool, got {show_results!r}")
        self.executor = executor
        self.guard = Guard(auth, insecure_local)
        self.hosts = HostCheck(allowed_hosts, insecure_local)
        self.read_only = read_only
        self.poll_interval = float(poll_interval)
        self.title = title
        self.views = Views(Presenter(redact, redact_hook, redact_text, show_results=show_results))
        self.csrf_token = new_csrf_token()
        folder = resources.files(__package__)
        self._static = {
            name: (folder.joinpath("static").joinpath(name).read_bytes(), kind)
            for name, kind in _STATIC.items()
        }
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader(__package__, "templates"),
            autoescape=True,  # every template, whatever its name: data is never markup
            undefined=jinja2.StrictUndefined,
        )
        self._templates.filters["utc"] = _utc
        self._app = Starlette(routes=self._routes(), exception_handlers=self._handlers())

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"<backburner Dashboard {mode}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the host and the credentials, then route; headers go on every response."""
        if scope["type"] == "lifespan":  # served on its own, not mounted: nothing to do
            await self._app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        send = _with_security_headers(send)
        request = Request(scope)
        if not self.hosts.allows(request.headers.get("host")):
            response = self._refusal(request, 400, "Invalid host header for this dashboard.")
            await response(scope, receive, send)
            return
        verdict = await self.guard.refuse(request)
        if verdict is not None:
            response = self._refusal(request, verdict.status, verdict.message, verdict.headers)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    # Routing.

    def _routes(self) -> list[Route]:
        pages: list[tuple[str, str, Callable[[Request, Backburner], dict[str, Any]]]] = [
            ("/", "overview", self._overview),
            ("/busy", "busy", self._busy),
            ("/pending", "pending", self._pending),
            ("/scheduled", "scheduled", self._scheduled),
            ("/retries", "retries", self._retries),
            ("/dead", "dead", self._dead),
            ("/periodic", "periodic", self._periodic),
        ]
        routes = [Route(path, self._page(name, view), name=name) for path, name, view in pages]
        routes += [
            Route(f"/api/{name if path != '/' else 'overview'}", self._api(view))
            for path, name, view in pages
        ]
        routes += [
            Route("/jobs/{job_id}", self._job_page),
            Route("/api/jobs/{job_id}", self._job_api),
            Route("/api/session", self._session),
            Route("/api/actions/{action}", self._action, methods=["POST"]),
            Route("/metrics", self._metrics),
            Route("/static/{name}", self._static_file),
        ]
        return routes

    def _handlers(self) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
        # (These run past the host and credential checks: their pages get the navigation.)
        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return self._refusal(
                request, exc.status_code, str(exc.detail), exc.headers, signed_in=True
            )

        async def bad_parameter(request: Request, exc: Exception) -> Response:
            return self._refusal(request, 400, str(exc), signed_in=True)

        async def not_running(request: Request, exc: Exception) -> Response:
            return self._refusal(request, 503, f"No executor to show: {exc}", signed_in=True)

        return {HTTPException: http_error, BadParameter: bad_parameter, NotRunning: not_running}

    def _executor(self) -> Backburner:
        return self.executor if self.executor is not None else current_executor()

    def _page(
        self, name: str, view: Callable[[Request, Backburner], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            bg = self._executor()
            data = view(request, bg)
            if name == "overview":  # every process of the app on this host
                data["box"] = await box_view(bg)
            elif name == "dead":  # and the dead jobs of the others, with a journal
                rows = await dead_elsewhere(bg, _ELSEWHERE_LIMIT)
                data["elsewhere"] = self.views.rows(rows)
            return self._render(request, f"{name}.html", name, data)

        return page

    def _api(
        self, view: Callable[[Request, Backburner], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def api(request: Request) -> Response:
            bg = self._executor()
            data = view(request, bg)
            if view == self._overview:
                data["box"] = await box_view(bg)
            return SafeJSONResponse(data)

        return api

    # The views, from the request's parameters.

    def _overview(self, request: Request, bg: Backburner) -> dict[str, Any]:
        return self.views.overview(bg, read_float(request, "minutes", MINUTES))

    def _busy(self, request: Request, bg: Backburner) -> dict[str, Any]:
        queue, offset, limit = _listing_params(request)
        return _checked(lambda: self.views.busy(bg, queue, offset, limit))

    def _pending(self, request: Request, bg: Backburner) -> dict[str, Any]:
        queue, offset, limit = _listing_params(request)
        return _checked(lambda: self.views.pending(bg, queue, offset, limit))

    def _scheduled(self, request: Request, bg: Backburner) -> dict[str, Any]:
        queue, offset, limit = _listing_params(request, TIMED_OFFSET)
        return _checked(lambda: self.views.timed(bg, JobStatus.SCHEDULED, queue, offset, limit))

    def _retries(self, request: Request, bg: Backburner) -> dict[str, Any]:
        queue, offset, limit = _listing_params(request, TIMED_OFFSET)
        return _checked(lambda: self.views.timed(bg, JobStatus.RETRYING, queue, offset, limit))

    def _dead(self, request: Request, bg: Backburner) -> dict[str, Any]:
        queue, offset, limit = _listing_params(request)
        return _checked(lambda: self.views.dead(bg, queue, offset, limit))

    def _periodic(self, request: Request, bg: Backburner) -> dict[str, Any]:
        return self.views.periodic(bg)

    async def _job_page(self, request: Request) -> Response:
        data = await self._job(request.path_params["job_id"])
        return self._render(request, "job.html", "job", data)

    async def _job_api(self, request: Request) -> Response:
        return SafeJSONResponse(await self._job(request.path_params["job_id"]))

    async def _job(self, job_id: str) -> dict[str, Any]:
        """This process's job, else (with a journal) another's, from the journal; else 404."""
        bg = self._executor()
        data = await self.views.job(bg, job_id)
        if data is None:
            row = await journal_row(bg, job_id)
            data = None if row is None else self.views.row(row)
        if data is None:
            raise HTTPException(404, _unknown_job(job_id))
        return data

    async def _session(self, request: Request) -> Response:
        return SafeJSONResponse(
            {"csrf_token": self.csrf_token, "read_only": self.read_only, "poll": self.poll_interval}
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(_encode(render_metrics(self._executor())), media_type=CONTENT_TYPE)

    async def _static_file(self, request: Request) -> Response:
        found = self._static.get(request.path_params["name"])
        if found is None:
            raise HTTPException(404, "No such file.")
        body, kind = found
        return Response(body, media_type=kind)

    # Actions.

    async def _action(self, request: Request) -> Response:
        action = request.path_params["action"]
        if self.read_only:
            raise HTTPException(403, "This dashboard is read-only: it takes no actions.")
        fields = await _read_form(request)
        refusal = csrf_refusal(
            request.headers, request.url.scheme, self.csrf_token, fields.get(CSRF_FIELD)
        )
        if refusal is not None:
            raise HTTPException(403, refusal)
        needed = ACTIONS.get(action)
        if needed is None:
            raise HTTPException(404, f"No action named {truncate(action, 40)!r}.")
        missing = [name for name in needed if not fields.get(name)]
        if missing:
            raise HTTPException(400, f"The {action} action needs the field(s) {missing}.")
        try:
            bg = self._executor()
            message = None
            if fields.get("job"):  # another process's job: through the journal
                message = await act_elsewhere(bg, action, fields["job"])
            if message is None:
                message = self.views.act(bg, action, fields)
        except ActionError as exc:
            raise HTTPException(exc.status, exc.message) from None
        logger.info("dashboard: %s", message)
        if _wants_json(request):
            return SafeJSONResponse({"ok": True, "message": message})
        return RedirectResponse(_safe_next(request, fields.get("next")), status_code=303)

    # Responses.

    def _render(self, request: Request, template: str, page: str, data: dict[str, Any]) -> Response:
        context = {
            "title": self.title,
            "root": _root(request),
            "page": page,
            "data": data,
            "read_only": self.read_only,
            "csrf_token": self.csrf_token,
            "poll": self._poll(request),
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        }
        html = self._templates.get_template(template).render(context)
        return Response(_encode(html), media_type="text/html; charset=utf-8")

    def _poll(self, request: Request) -> float:
        # Absent or empty: the configured interval; any zero ("0", "0.0"): no live updates.
        raw = request.query_params.get("poll", "").strip()
        if not raw:
            return self.poll_interval
        value = read_float(request, "poll", Range(self.poll_interval, 0, POLL.high))
        return 0.0 if value == 0 else float(max(value, POLL.low))

    def _refusal(
        self,
        request: Request,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        signed_in: bool = False,
    ) -> Response:
        """The error as JSON, text or a page: with the pages' layout and navigation for a
        client that passed the checks, a bare one (no links, no CSRF token) before that."""
        path = request.scope.get("path", "")
        root = _root(request)
        inner = path[len(root) :] if path.startswith(root) else path
        if inner.startswith("/api/") or _wants_json(request):
            return SafeJSONResponse({"error": message}, status, headers=headers)
        if inner.startswith(("/metrics", "/static/")):
            return PlainTextResponse(_encode(message), status, headers=headers)
        html = self._templates.get_template("error.html").render(
            title=self.title,
            root=root,
            status=status,
            message=message,
            signed_in=signed_in,
            page="",  # no page's script runs, no tab is the current one
            read_only=self.read_only,
            csrf_token=self.csrf_token if signed_in else "",
            poll=0.0,
        )
        return Response(
            _encode(html), status, headers=headers, media_type="text/html; charset=utf-8"
        )


class SafeJSONResponse(JSONResponse):
    """JSON with ``<``, ``>`` and ``&`` escaped: it stays inert wherever it ends up."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return _encode(text)


def _encode(text: str) -> bytes:
    # The last guard (the presenter already made each string printable): a lone surrogate
    # from application data must never turn a page into a 500.
    return text.encode("utf-8", "backslashreplace")


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k not in _HEADER_NAMES]
            message = {**message, "headers": headers + _HEADERS}
        await send(message)

    return wrapped


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _queue_param(request: Request) -> str | None:
    return request.query_params.get("queue") or None


def _listing_params(request: Request, offsets: Range = OFFSET) -> tuple[str | None, int, int]:
    return (
        _queue_param(request),
        read_int(request, "offset", offsets),
        read_int(request, "limit", LIMIT),
    )


def _checked(view: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return view()
    except ValueError as exc:  # an unknown queue name
        raise BadParameter(str(exc)) from None


def _unknown_job(job_id: str) -> str:
    return (
        f"No job {truncate(job_id, 60)} here: it is not running, waiting or scheduled, and no "
        "job with this id finished lately (a finished job is kept for result_ttl, then shown "
        "expired for as long again)."
    )


async def _read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise HTTPException(415, "Actions take a form (application/x-www-form-urlencoded).")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise HTTPException(413, "The form is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "The form could not be read.") from None
    return dict(pairs)


def _safe_next(request: Request, target: str | None) -> str:
    """Where a form's action goes back to: a path inside this dashboard, else its overview."""
    root = _root(request)
    if (
        target
        and target.startswith(root + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(ch.isprintable() and not ch.isspace() for ch in target)
    ):
        return target
    return root + "/"


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "-"


#: The dashboard, to mount: ``app.mount("/backburner", dashboard(auth=("admin", pw)))``. The
#: same as ``Dashboard(...)``: its settings are declared once, on ``Dashboard.__init__``.
dashboard = Dashboard
