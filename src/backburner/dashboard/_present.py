"""A job as the dashboard shows it: arguments redacted and truncated, times as numbers.

Everything a job carries (its arguments, its function's name, its queue's name, its error)
came from application code, maybe from a user: it is shortened here, and escaped by the
templates (Jinja's autoescape) and by the script (``textContent``), never trusted as markup.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._errortext import error_line, traceback_text
from .._info import JobInfo
from .._job import ArgRepr, Job
from .._progress import Progress
from .._status import JobStatus
from ._redact import DEFAULT_REDACT, MASK, MIN_SECRET, QUERY_SECRETS, SecretNames, scrub_text

__all__ = [
    "DEFAULT_REDACT",
    "MASK",
    "Presenter",
    "RedactHook",
    "RedactText",
    "printable",
    "truncate",
]

logger = logging.getLogger("backburner")

#: ``redact_hook(job, args, kwargs) -> (args, kwargs)``: what to show of a job's arguments.
RedactHook = Callable[
    [Job[Any], tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]
]
#: ``redact_text(job, text) -> text``: what to show of a job's error, traceback, unique key or
#: return value.
RedactText = Callable[[Job[Any], str], str]

_ARG_CHARS = 300  # one argument's repr, or the return value's
_NAME_CHARS = 200  # a function's or a queue's name
_ERROR_CHARS = 1000  # an exception's message
_PROGRESS_CHARS = 200  # a progress report, its message included
# What a job page shows for the arguments of a job known only by its snapshot.
_NOT_KEPT = "(not kept once the job ended)"
_TRACEBACK_CHARS = 20_000
_CANCELLABLE = (
    JobStatus.PENDING,
    JobStatus.BLOCKED,
    JobStatus.THROTTLED,
    JobStatus.SCHEDULED,
    JobStatus.RETRYING,
)

_builtin_repr = repr  # (a name of its own: the tests watch what it is given)


class _Repr(ArgRepr):
    """The log lines' ``ArgRepr``, but bytes-like values are cut before their repr is made, not
    after: a 10 MB argument costs its first few hundred bytes, not a 40 MB string, at every
    poll."""

    def repr_bytes(self, value: bytes, level: int) -> str:
        return self._cut(value, len(value), self.maxstring)

    def repr_bytearray(self, value: bytearray, level: int) -> str:
        return f"bytearray({self._cut(bytes(value[: self.maxstring]), len(value), self.maxstring)})"

    def repr_memoryview(self, value: memoryview, level: int) -> str:
        return f"<memoryview of {value.nbytes} bytes>"

    def _cut(self, value: bytes, size: int, limit: int) -> str:
        if size <= limit:
            return _builtin_repr(bytes(value))
        text = _builtin_repr(bytes(value[:limit]))
        return f"{text[:-1][: limit // 2]}...{text[-1]} ({size} bytes)"  # (escapes are long)


_repr = _Repr()
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
_ITEMS = 9  # items of a container looked at: the repr shows 8 and "..."
_WINDOW = 2000  # of a longer string, only this much of each end is scrubbed (the repr shows less)


class _Fields:
    """A dataclass or named tuple, its secret fields masked: shown as ``Name(a=1, b=...)``."""

    def __init__(self, name: str, fields: list[tuple[str, Any]]) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={_repr.repr(value)}" for key, value in self.fields)
        return f"{self.name}({inner})"


class Presenter:
    """Turns jobs into JSON-ready dicts, masking configured argument names.

    ``show_results`` shows a succeeded job's return value on its page (redacted and cut like
    an argument); False, the default, hides it (``"result"`` is then always None).
    """

    def __init__(
        self,
        redact: Iterable[str],
        redact_hook: RedactHook | None,
        redact_text: RedactText | None = None,
        *,
        show_results: bool = False,
    ) -> None:
        if isinstance(redact, str):
            raise TypeError(f"redact takes a list of names, got the str {redact!r}")
        names = tuple(redact)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"redact holds argument names (str), got {name!r}")
        if redact_hook is not None and not callable(redact_hook):
            raise TypeError(f"redact_hook must be callable(job, args, kwargs), got {redact_hook!r}")
        if redact_text is not None and not callable(redact_text):
            raise TypeError(f"redact_text must be callable(job, text), got {redact_text!r}")
        self.names = SecretNames(names)
        self.params = SecretNames(names + QUERY_SECRETS)  # as query parameters in text
        self.hook = redact_hook
        self.text_hook = redact_text
        self.show_results = show_results

    def job(
        self,
        job: Job[Any],
        *,
        in_failures: bool,
        detail: bool = False,
        journaled: bool = False,
    ) -> dict[str, Any]:
        """The fields every listing shows; with ``detail``, the traceback, options and result.

        ``journaled``: the job's executor has a journal, so an attempt cut short by a crash
        runs again (and may go past the automatic attempts, as a manual retry does).
        """
        status = job.status
        exc = job.exception()
        args, secrets = self._arguments(job)
        allowed = job.options.retries + 1
        data: dict[str, Any] = {
            "id": job.id,
            "name": truncate(job.name, _NAME_CHARS),
            "queue": truncate(job.queue, _NAME_CHARS),
            "status": status.value,
            "attempt": job.attempt,
            "attempts": allowed,
            "attempt_text": _attempt_text(job.attempt, allowed, journaled),
            "enqueued_at": job.enqueued_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "run_at": job.run_at if status in (JobStatus.SCHEDULED, JobStatus.RETRYING) else None,
            "args": args,
            "error": None
            if exc is None
            else truncate(
                self._text(job, _error_line(exc, 10 * _ERROR_CHARS), secrets), _ERROR_CHARS
            ),
            "in_failures": in_failures,
            # The limit that holds a blocked or throttled job, else None.
            "held_by": None if job.held_by is None else truncate(job.held_by, _NAME_CHARS),
            "can_cancel": status in _CANCELLABLE or (status is JobStatus.RUNNING and job.is_async),
            "progress": self._progress(job, secrets),
        }
        if detail:
            data["traceback"] = (
                None if exc is None else self._text(job, _traceback(exc), secrets, _TRACEBACK_CHARS)
            )
            data["kind"] = "async" if job.is_async else "sync (thread)"
            data["timeout"] = job.options.timeout
            data["unique_key"] = (
                None
                if job.unique_key is None
                else self._text(job, job.unique_key, secrets, _ARG_CHARS)
            )
            data["result"] = self._result(job, secrets) if self.show_results else None
        return data

    def info(self, info: JobInfo) -> dict[str, Any]:
        """A job known only by its ``lookup`` snapshot (an expired tombstone, or a finished job
        whose result was not kept): what it was and how it ended, no arguments, no result."""
        name = truncate(printable(info.name), _NAME_CHARS)
        return {
            "id": printable(info.id),
            "name": name,
            "queue": truncate(printable(info.queue), _NAME_CHARS),
            "status": info.status.value,
            "attempt": info.attempt,
            "attempts": info.attempt,
            "attempt_text": str(info.attempt),
            "enqueued_at": info.enqueued_at,
            "started_at": info.started_at,
            "finished_at": info.finished_at,
            "run_at": None,
            "args": [_NOT_KEPT],
            "error": None,
            "in_failures": False,
            "held_by": None,
            "can_cancel": False,
            "progress": None,
            "traceback": None,
            "kind": "",
            "timeout": None,
            "unique_key": None,
            "result": None,
        }

    def _progress(self, job: Job[Any], secrets: list[str]) -> str | None:
        """The job's latest progress report in words, its message masked like its error."""
        progress = job.progress
        if progress is None:
            return None
        text = progress_text(progress)
        if progress.message is not None:
            message = self._text(job, truncate(progress.message, _PROGRESS_CHARS), secrets)
            text = f"{text} · {message}"
        return truncate(text, _PROGRESS_CHARS)

    def arguments(self, job: Job[Any]) -> list[str]:
        """Each argument as shown: ``name=value`` where the function's signature names it."""
        return self._arguments(job)[0]

    def _arguments(self, job: Job[Any]) -> tuple[list[str], list[str]]:
        # Also the text of the values masked, to mask them in the error text too.
        secrets: list[str] = []
        args, kwargs = job.args, dict(job.kwargs or {})
        signature = _signature(job.fn)
        binding = _bind(signature, len(args), kwargs)
        if binding is not None:  # each positional argument's parameter (a *args one's too)
            names: tuple[str | None, ...] = tuple(name for name, _ in binding)
        else:  # arguments that do not bind: mask by position, as far as names go
            names = _positional_names(signature)
        hide = not job.options.log_args  # @job(log_args=False): every argument is a secret
        shown_args: list[Any] = [
            self._mask(arg, secrets)
            if hide or (i < len(names) and self._secret(names[i]))
            else self._scrub(arg, secrets)
            for i, arg in enumerate(args)
        ]
        shown_kwargs = {
            key: self._mask(value, secrets)
            if hide or self._secret(key)
            else self._scrub(value, secrets)
            for key, value in kwargs.items()
        }
        if self.hook is not None:
            try:
                hooked = self.hook(job, tuple(shown_args), shown_kwargs)
                shown_args, shown_kwargs = list(hooked[0]), dict(hooked[1])
            except Exception:
                logger.exception("the dashboard's redact_hook failed for job %s", job.id)
                return ["(hidden: the redact hook failed)"], secrets
            if len(shown_args) != len(args) or shown_kwargs.keys() != kwargs.keys():
                binding = _bind(signature, len(shown_args), shown_kwargs)
        labels = [None if spread else name for name, spread in binding or ()]
        parts = [
            truncate(f"{labels[i]}={_show(arg)}", _ARG_CHARS)
            if i < len(labels) and labels[i]
            else _show(arg)
            for i, arg in enumerate(shown_args)
        ]
        parts += [
            truncate(f"{key}={_show(value)}", _ARG_CHARS) for key, value in shown_kwargs.items()
        ]
        return parts, secrets

    def _result(self, job: Job[Any], secrets: list[str]) -> str | None:
        """A succeeded job's return value, redacted and cut like an argument; else None."""
        if job.status is not JobStatus.SUCCEEDED:
            return None
        try:
            value = job.result()
        except Exception:  # (ended otherwise since its status was read: nothing to show)
            return None
        # A function named for a secret (issue_token, get_password) returns one.
        if self._secret(job.name.rsplit(".", 1)[-1]):
            return MASK
        return truncate(self._text(job, _show(self._scrub(value, secrets)), secrets), _ARG_CHARS)

    def _text(self, job: Job[Any], text: str, secrets: list[str], limit: int = 0) -> str:
        """An error, traceback, unique key or result: masked values masked, secrets written
        in the text masked (URL passwords, tokens in queries and headers), ``redact_text``
        applied."""
        for secret in secrets:
            text = text.replace(secret, MASK)
        text = scrub_text(text, self.params, [])
        if self.text_hook is not None:
            try:
                text = self.text_hook(job, text)
                if not isinstance(text, str):
                    raise TypeError(f"redact_text returned {type(text).__name__}, not a str")
            except Exception:
                logger.exception("the dashboard's redact_text failed for job %s", job.id)
                return "(hidden: the redact_text hook failed)"
        if limit and len(text) > limit:  # keep the end (for a traceback, where it raised)
            text = "…" + text[-(limit - 1) :]
        return printable(text)

    def _secret(self, name: object) -> bool:
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name[:200]).decode("latin-1")
        if not isinstance(name, str):
            return False
        return self.names.match(name)

    def _mask(self, value: Any, secrets: list[str]) -> _Masked:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value[:1000]).decode("utf-8", "replace")
        if isinstance(value, str) and len(value) >= MIN_SECRET:
            secrets.append(value)
        return _MASKED

    def _scrub(self, value: Any, secrets: list[str], depth: int = 0) -> Any:
        """Mask what is secret inside an argument, a few levels deep: secrets written in
        strings (a URL's password, ``?token=...``, ``Bearer ...``: see ``scrub_text``); values
        of dicts under a secret key (``{"password": ...}``, ``{b"token": ...}``), the value of
        a ``(name, value)`` pair with a secret name (``("Authorization", "Bearer x")``), and
        the secret fields of dataclasses and named tuples, and dataclass fields declared
        ``field(repr=False)``; through lists, tuples and sets. Only the items the repr shows
        are looked at."""
        if depth > 3:
            return value
        if isinstance(value, str):
            if len(value) <= 2 * _WINDOW:
                return scrub_text(value, self.params, secrets)
            # Only its two ends show (reprlib keeps both): each is scrubbed on its own.
            head = scrub_text(value[:_WINDOW], self.params, secrets)
            return head + scrub_text(value[-_WINDOW:], self.params, secrets)
        if isinstance(value, Mapping):
            return {
                key: self._mask(item, secrets)
                if self._secret(key)
                else self._scrub(item, secrets, depth + 1)
                for key, item in itertools.islice(value.items(), _ITEMS)
            }
        fields = _fields_of(value)
        if fields is not None:
            return _Fields(
                type(value).__name__,
                [
                    (
                        name,
                        self._mask(item, secrets)
                        if hidden or self._secret(name)
                        else self._scrub(item, secrets, depth + 1),
                    )
                    for name, item, hidden in itertools.islice(fields, _ITEMS)
                ],
            )
        if isinstance(value, (tuple, list)):
            if len(value) == 2 and self._secret(value[0]):
                pair = (value[0], self._mask(value[1], secrets))
                return pair if isinstance(value, tuple) else list(pair)
            items = [self._scrub(item, secrets, depth + 1) for item in value[:_ITEMS]]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, (set, frozenset)):
            items = [
                self._scrub(item, secrets, depth + 1) for item in itertools.islice(value, _ITEMS)
            ]
            try:
                return type(value)(items) if type(value) in (set, frozenset) else set(items)
            except TypeError:  # an unhashable result: shown as a list
                return items
        return value


def _attempt_text(attempt: int, allowed: int, journaled: bool) -> str:
    """``2 of 3``; past the automatic attempts (a manual retry of a dead job, or with a
    journal a run again after a crash), what gave the extra one, never ``4 of 3``."""
    if attempt <= allowed:
        return f"{attempt} of {allowed}" if allowed > 1 else str(attempt)
    extra = "manual retry" if attempt == allowed + 1 else "manual retries"
    if journaled:
        extra += " or a run again after a crash"
    return f"{attempt} ({extra}; {allowed} allowed automatically)"


def _fields_of(value: Any) -> Iterable[tuple[str, Any, bool]] | None:
    """A dataclass instance's or a named tuple's fields, as (name, value, hidden); None
    otherwise. Hidden: a dataclass field declared ``field(repr=False)``, which the app's own
    repr leaves out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            (f.name, getattr(value, f.name, None), not f.repr) for f in dataclasses.fields(value)
        )
    names = getattr(type(value), "_fields", None)
    if isinstance(value, tuple) and isinstance(names, tuple):
        return ((name, item, False) for name, item in zip(names, value, strict=False))
    return None


@functools.lru_cache(maxsize=1024)
def _cached_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    return _signature_of(fn)


def _signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one, say
        return None


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """``fn``'s signature, cached for the functions that can be (most can); None if none."""
    try:
        return _cached_signature(fn)
    except TypeError:  # unhashable
        return _signature_of(fn)


def _bind(
    signature: inspect.Signature | None, count: int, kwargs: Mapping[str, Any]
) -> list[tuple[str, bool]] | None:
    """For each of ``count`` positional arguments, the parameter it binds to and whether
    that is a ``*args`` one; None if the arguments do not bind (a wrapper's signature that
    is not the real one, a hook that reshaped them)."""
    if signature is None:
        return None
    try:  # (bind looks only at how many there are and at the keywords' names)
        signature.bind(*range(count), **dict.fromkeys(kwargs))
    except TypeError:
        return None
    names: list[tuple[str, bool]] = []
    for parameter in signature.parameters.values():
        if len(names) == count:
            break
        if parameter.kind is parameter.VAR_POSITIONAL:
            names += [(parameter.name, True)] * (count - len(names))
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append((parameter.name, False))
    return names


def _positional_names(signature: inspect.Signature | None) -> tuple[str, ...]:
    """The names positional arguments bind to, in order, so that ``send(to, password)`` is
    masked even when the call does not bind."""
    if signature is None:
        return ()
    return tuple(
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def _show(value: Any) -> str:
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a __repr__ that raises must not break the page
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return truncate(text, _ARG_CHARS)


def _error_line(exc: BaseException, limit: int = _ERROR_CHARS) -> str:
    return truncate(error_line(exc, limit), limit)


def _traceback(exc: BaseException) -> str:
    # Cut as the failure's log record is (each part, then the whole keeping where it raised).
    return printable(traceback_text(exc, _TRACEBACK_CHARS))


def progress_text(progress: Progress) -> str:
    """``"30 of 100 (30%), about 7s left"``; ``"30 done"`` without a total."""
    if progress.total is None:
        return f"{progress.done:g} done"
    fraction = progress.fraction or 0.0
    text = f"{progress.done:g} of {progress.total:g} ({fraction:.0%})"
    eta = progress.eta
    if eta is not None and fraction < 1:
        text += f", about {_duration(eta)} left"
    return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h {minutes % 60}m"
    return f"{hours // 24}d"
