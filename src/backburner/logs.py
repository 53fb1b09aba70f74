"""Log records that carry their job: a ``logging.Filter``, a structlog processor, and the
handler backburner adds under a server that configured no logging.

``JobContextFilter`` gives every record it sees the attributes ``job_id``, ``job_name``,
``queue``, ``attempt`` and ``trace_id``: the job's, for a record emitted by a job's code (its
async code on the event loop, a sync job's function on its thread, and the tasks and threads
either starts), whichever logger wrote it; ``default`` (``"-"``) outside a job, so that a
format string naming them never fails. Put it on a handler::

    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s [%(job_id)s %(job_name)s] %(message)s"))

``trace_id`` is the current OpenTelemetry span's trace id (32 hex digits) if
``opentelemetry`` is installed and a span is being recorded; else ``default``.

For structlog, ``add_job_context`` is a processor adding the same keys to the event dict (only
inside a job)::

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        backburner.logs.add_job_context,
        structlog.processors.JSONRenderer(),
    ])

The job is a context variable set when each attempt starts, so the tasks and threads a job's
code starts (``asyncio.gather``, a task group, ``asyncio.to_thread``) carry it too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

from ._current import current_attempt, current_job
from ._job import Job

__all__ = ["FIELDS", "JobContextFilter", "add_job_context", "current_job", "install_fallback"]

#: The attributes ``JobContextFilter`` sets on every record (and ``add_job_context`` adds).
FIELDS = ("job_id", "job_name", "queue", "attempt", "trace_id")

logger = logging.getLogger("backburner")

_trace: Any = None  # opentelemetry.trace once imported; False if it is not installed


def _trace_id() -> str | None:
    """The current OpenTelemetry span's trace id as 32 hex digits, or None."""
    global _trace
    if _trace is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _trace = False
        else:
            _trace = trace
    if _trace is False:
        return None
    context = _trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def _fields(running: tuple[Job[Any], int] | None, default: object) -> dict[str, object]:
    trace_id = _trace_id()
    if running is None:
        fields = dict.fromkeys(FIELDS, default)
    else:
        job, attempt = running
        fields = {
            "job_id": job.id,
            "job_name": job.name,
            "queue": job.queue,
            "attempt": attempt,
            "trace_id": default,
        }
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


class JobContextFilter(logging.Filter):
    """Adds ``job_id``, ``job_name``, ``queue``, ``attempt`` and ``trace_id`` to each record.

    Inside a job they are the job's (``attempt`` counts from 1); elsewhere each is ``default``:
    ``"-"`` reads well in text, ``None`` suits JSON. A record that already has one of these
    attributes (given in ``extra=``) keeps it. The filter lets every record through.

    In a ``dictConfig``: ``"filters": {"job": {"()": "backburner.logs.JobContextFilter"}}``,
    then ``"filters": ["job"]`` on the handler. It reads the job where it runs: behind a
    ``QueueHandler``, put it on the ``QueueHandler``, not on the listener's handlers.
    """

    def __init__(self, default: object = "-") -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the attributes on ``record``; always True."""
        for name, value in _fields(current_attempt(), self.default).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def add_job_context(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: inside a job, ``job_id``, ``job_name``, ``queue``, ``attempt``
    (and ``trace_id`` when OpenTelemetry has a span) join the event dict, unless it has them."""
    running = current_attempt()
    if running is not None:
        for name, value in _fields(running, None).items():
            if value is not None:
                event_dict.setdefault(name, value)
    return event_dict


def _configured() -> bool:
    """Logging was configured: the root logger has a handler, or ours has another than the
    fallback (or no longer the fallback: a ``dictConfig`` naming it removes its handlers)."""
    return bool(logging.root.handlers) or [type(h) for h in logger.handlers] != [_Fallback]


class _Fallback(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``install_fallback`` adds: it steps aside once logging is configured."""

    def handle(self, record: logging.LogRecord) -> bool:
        # Configured after startup (dictConfig, basicConfig, a handler added to our logger):
        # that handler writes the record, so writing it here too would print it twice.
        if _configured():
            return False
        return super().handle(record)


class _LevelGiveBack(logging.Filter):
    """On the logger with the fallback's level: once logging is configured, the level goes
    back to NOTSET (the configuration's levels rule, DEBUG and WARNING alike), and the record
    at hand is held to them too. Then it lets every record through. (It stays on the logger:
    removing a filter while the logger iterates its filters would skip the next one.)"""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level  # the one the fallback set
        self.given_back = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.given_back or not _configured():
            return True
        self.given_back = True
        if logger.level != self.level:  # set since by the user: theirs
            return True
        logger.setLevel(logging.NOTSET)
        return record.levelno >= logger.getEffectiveLevel()


def _formatter() -> logging.Formatter:
    """uvicorn's own look (``INFO:     ...``, coloured on a terminal) with the time and the
    logger's name; a plain formatter of the same shape where uvicorn is not installed."""
    fmt = "%(levelprefix)s %(asctime)s %(name)s: %(message)s"
    try:
        from uvicorn.logging import DefaultFormatter
    except ImportError:
        return logging.Formatter("%(levelname)-9s %(asctime)s %(name)s: %(message)s")
    return DefaultFormatter(fmt, use_colors=None)


def install_fallback() -> bool:
    """Give the ``backburner`` logger a handler of its own if nothing would write its records.

    Under a plain ``uvicorn app:app``, uvicorn configures only its own loggers: backburner's
    INFO records would go nowhere and its warnings out bare (no time, level or logger), through
    Python's last-resort handler. So, when neither the ``backburner`` logger nor the root
    logger has a handler, this adds one writing to stderr in uvicorn's style, and, if the
    logger's level is not set, lets through what uvicorn's ``--log-level`` does (INFO and up
    by default; ``--log-level warning`` leaves INFO out). It does nothing once logging is
    configured, and the handler steps aside if it is configured later: no line is written
    twice, and the logger's level goes back to unset, so the levels configured hold for its
    lines.
    ``BackburnerMiddleware`` calls it at startup. To turn it off, configure logging, or give
    the logger any handler: ``logging.getLogger("backburner").addHandler(logging.NullHandler())``.
    Returns True if it added the handler.
    """
    if logger.handlers or logging.root.handlers:
        return False
    handler = _Fallback(sys.stderr)
    handler.setFormatter(_formatter())
    logger.addHandler(handler)
    level = _server_level()
    if logger.level == logging.NOTSET and logger.getEffectiveLevel() != level:
        # One below the server's: its records pass, and no one else sets such a level, so
        # it is known for ours (and given back) once logging is configured; a level the user
        # set on the logger, INFO included, is never touched.
        logger.setLevel(level - 1)
        logger.addFilter(_LevelGiveBack(level - 1))
    return True


def _server_level() -> int:
    """The level of the server's own log: uvicorn's ``--log-level`` (gunicorn's uvicorn worker
    sets it from gunicorn's), INFO when none is set or the server is not uvicorn."""
    server = logging.Logger.manager.loggerDict.get("uvicorn.error")
    if isinstance(server, logging.Logger) and server.level != logging.NOTSET:
        return server.level
    return logging.INFO
