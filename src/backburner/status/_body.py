"""A job's snapshot as the JSON the status app serves."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .._job import long_int_text

if TYPE_CHECKING:
    from .._info import JobInfo
    from .._progress import Progress

__all__ = ["body_of", "dumps"]


def dumps(data: Any) -> bytes:
    """Compact, strict JSON (no NaN) in UTF-8: what every response and event carries."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (in an error's message, a result): UTF-8 has no bytes for it, and
        # JSON's \u escapes do. Rare, so the common answer is not escaped for it.
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()


def body_of(info: JobInfo, *, show_errors: bool = False) -> dict[str, Any]:
    """The JSON object for ``info``: every field but ``meta`` (it is for ``authorize``, and may
    name a user); the result only if kept, as JSON if it is, else as its ``repr``; of an
    error, its type's name only, unless ``show_errors`` (an error's message may hold what a
    client is not to see: a query, a path, a host, a key)."""
    body: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "queue": info.queue,
        "status": info.status.value,
        "finished": info.status.finished,
        "attempt": info.attempt,
        "position": info.position,
        "progress": _progress(info.progress),
        "enqueued_at": info.enqueued_at,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "expires_at": info.expires_at,
        "error": info.error if show_errors or info.error is None else _kind(info.error),
    }
    if info.has_result:
        body.update(_result(info.result))
    return body


def _kind(error: str) -> str:
    # An error line is "Type: message" (or "Type" alone): type names hold no ": ".
    return error.split(": ", 1)[0]


def _progress(progress: Progress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    return {
        "done": _number(progress.done),
        "total": _number(progress.total),
        "fraction": _number(progress.fraction),
        "message": progress.message,
        "eta": _number(progress.eta),
        "updated_at": progress.updated_at,
    }


def _number(value: float | None) -> float | None:
    # JSON has no NaN or infinity: a progress of done=nan says nothing a client can read.
    return value if value is None or math.isfinite(value) else None


def _result(value: Any) -> dict[str, Any]:
    try:
        dumps(value)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__ must not break the status route
            text = _unshown(value, exc)
        return {"result": text, "result_is_repr": True}
    return {"result": value, "result_is_repr": False}


def _unshown(value: Any, exc: Exception) -> str:
    if isinstance(value, int) and isinstance(exc, ValueError):
        # Past sys.get_int_max_str_digits() Python refuses to write an int in decimal: its
        # repr did not fail, the number is too long to show.
        return long_int_text(value)
    return f"<{type(value).__name__} object: its repr failed>"
