"""A job as the dashboard shows it: arguments redacted and truncated, times as numbers.

Everything a job carries (its arguments, its function's name, its queue's name, its error)
came from application code, maybe from a user: it is shortened here, and escaped by the
templates (Jinja's autoescape) and by the script (``textContent``), never trusted as markup.
"""

from __future__ import annotations

import functools
import inspect
import logging
import reprlib
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._job import Job
from .._status import JobStatus

__all__ = ["DEFAULT_REDACT", "Presenter", "RedactHook", "printable", "truncate"]

logger = logging.getLogger("backburner")

#: Argument names whose values are masked unless ``redact=`` says otherwise (matched as parts
#: of a name, ignoring case: ``db_password`` and ``X-Api-Key`` are masked).
DEFAULT_REDACT = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "private_key",
)
MASK = "••••••"

#: ``redact_hook(job, args, kwargs) -> (args, kwargs)``: what to show of a job's arguments.
RedactHook = Callable[
    [Job[Any], tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]
]

_ARG_CHARS = 300  # one argument's repr
_NAME_CHARS = 200  # a function's or a queue's name
_ERROR_CHARS = 1000  # an exception's message
_TRACEBACK_CHARS = 20_000
_CANCELLABLE = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlong = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = _repr.maxfrozenset = 8
_repr.maxlevel = 3


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates, as ``surrogateescape`` makes
    of a file name's bytes) written as ``\\udce9``: every string shown passes here, or the
    page or the JSON holding it could not be sent at all."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()


def truncate(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis if it was longer, printable."""
    text = printable(text if len(text) <= limit else text[: limit - 1] + "…")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Masked:
    def __repr__(self) -> str:
        return MASK


_MASKED = _Masked()


class Presenter:
    """Turns jobs into JSON-ready dicts, masking configured argument names."""

    def __init__(self, redact: Iterable[str], redact_hook: RedactHook | None) -> None:
        if isinstance(redact, str):
            raise TypeError(f"redact takes a list of names, got the str {redact!r}")
        names = tuple(redact)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"redact holds argument names (str), got {name!r}")
        if redact_hook is not None and not callable(redact_hook):
            raise TypeError(f"redact_hook must be callable(job, args, kwargs), got {redact_hook!r}")
        self.names = tuple(name.lower() for name in names)
        self.hook = redact_hook

    def job(self, job: Job[Any], *, in_failures: bool, detail: bool = False) -> dict[str, Any]:
        """The fields every listing shows; with ``detail``, the traceback and options too."""
        status = job.status
        exc = job.exception()
        data: dict[str, Any] = {
            "id": job.id,
            "name": truncate(job.name, _NAME_CHARS),
            "queue": truncate(job.queue, _NAME_CHARS),
            "status": status.value,
            "attempt": job.attempt,
            "attempts": job.options.retries + 1,
            "enqueued_at": job.enqueued_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "run_at": job.run_at if status in (JobStatus.SCHEDULED, JobStatus.RETRYING) else None,
            "args": self.arguments(job),
            "error": None if exc is None else _error_line(exc),
            "in_failures": in_failures,
            "can_cancel": status in _CANCELLABLE or (status is JobStatus.RUNNING and job.is_async),
        }
        if detail:
            data["traceback"] = None if exc is None else _traceback(exc)
            data["kind"] = "async" if job.is_async else "sync (thread)"
            data["timeout"] = job.options.timeout
            data["unique_key"] = (
                None if job.unique_key is None else truncate(job.unique_key, _ARG_CHARS)
            )
        return data

    def arguments(self, job: Job[Any]) -> list[str]:
        """Each argument as shown: positional ones first, then ``name=value``."""
        args, kwargs = job.args, dict(job.kwargs or {})
        names = parameter_names(job.fn)
        shown_args: list[Any] = [
            _MASKED if i < len(names) and self._secret(names[i]) else self._scrub(arg)
            for i, arg in enumerate(args)
        ]
        shown_kwargs = {
            key: _MASKED if self._secret(key) else self._scrub(value)
            for key, value in kwargs.items()
        }
        if self.hook is not None:
            try:
                hooked = self.hook(job, tuple(shown_args), shown_kwargs)
                shown_args, shown_kwargs = list(hooked[0]), dict(hooked[1])
            except Exception:
                logger.exception("the dashboard's redact_hook failed for job %s", job.id)
                return ["(hidden: the redact hook failed)"]
        parts = [_show(arg) for arg in shown_args]
        parts += [
            truncate(f"{key}={_show(value)}", _ARG_CHARS) for key, value in shown_kwargs.items()
        ]
        return parts

    def _secret(self, name: str) -> bool:
        lowered = name.lower()
        return any(secret in lowered for secret in self.names)

    def _scrub(self, value: Any, depth: int = 0) -> Any:
        """Mask secret keys inside dicts (``{"password": ...}``), a few levels deep."""
        if depth > 3 or not isinstance(value, Mapping):
            return value
        return {
            key: _MASKED
            if isinstance(key, str) and self._secret(key)
            else self._scrub(item, depth + 1)
            for key, item in value.items()
        }


@functools.lru_cache(maxsize=1024)
def _cached_parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    return _parameter_names(fn)


def _parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names positional arguments bind to, so that ``send(to, password)`` is masked too."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """``_parameter_names``, cached for the functions that can be (most can)."""
    try:
        return _cached_parameter_names(fn)
    except TypeError:  # unhashable
        return _parameter_names(fn)


def _show(value: Any) -> str:
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a __repr__ that raises must not break the page
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return truncate(text, _ARG_CHARS)


def _error_line(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        message = "(str() of the exception failed)"
    name = type(exc).__name__
    return truncate(f"{name}: {message}" if message else name, _ERROR_CHARS)


def _traceback(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        text = _error_line(exc)
    if len(text) > _TRACEBACK_CHARS:  # keep the end: the frame that raised and the message
        text = "…" + text[-(_TRACEBACK_CHARS - 1) :]
    return printable(text)
