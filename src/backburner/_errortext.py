"""An exception as text of a bounded size, for log records and the dashboard.

A job's exception came from application code, maybe with a message of megabytes (a response
body, a whole file): logged as it is, one failure would write megabytes, and a retry loop
gigabytes. So every failure record backburner writes holds at most ``MESSAGE_CHARS`` of an
exception's message and ``TRACEBACK_CHARS`` of its traceback, cut in the middle with a note of
how much was left out; the dashboard shows the same text, cut to its own page sizes.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from typing import Any

__all__ = ["MESSAGE_CHARS", "TRACEBACK_CHARS", "cut", "error_line", "log_failure", "traceback_text"]

logger = logging.getLogger("backburner")

#: The most characters of one exception's message a log record holds (its type name aside).
MESSAGE_CHARS = 8 * 1024
#: The most characters of a traceback a log record holds: every frame, usually; the frames
#: nearest to the ``raise`` when there are too many.
TRACEBACK_CHARS = 16 * 1024


def cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters; else its start and its end, with a
    note in between saying how many characters were left out (for any ``limit`` of 100 or
    more, the result fits it)."""
    if len(text) <= limit:
        return text
    note, keep = _note(len(text), limit, " [... {} more characters ...] ")
    head = keep // 2
    return text[:head] + note + text[len(text) - (keep - head) :]


def _note(length: int, limit: int, template: str) -> tuple[str, int]:
    """The note saying how many of ``length`` characters are left out so that the kept ones
    and the note fit ``limit``, and how many are kept. (The count's digits take room too.)"""
    keep = limit
    while True:
        note = template.format(length - keep)
        if keep == max(0, limit - len(note)):
            return note, keep
        keep = max(0, limit - len(note))


def error_line(exc: BaseException, limit: int = MESSAGE_CHARS) -> str:
    """``"ValueError: the message"``, the message cut to ``limit`` characters."""
    try:
        message = str(exc)
    except Exception:
        message = "(str() of the exception failed)"
    name = type(exc).__name__
    return f"{name}: {cut(message, limit)}" if message else name


def traceback_text(
    exc: BaseException, limit: int = TRACEBACK_CHARS, part_limit: int = MESSAGE_CHARS
) -> str:
    """The traceback as Python prints it, with each part (a frame, the message of each chained
    exception) cut to ``part_limit`` and the whole to ``limit``, keeping its end: the frame
    that raised and the message are what a reader looks for first."""
    return _traceback(exc, limit, part_limit)[0]


def _traceback(exc: BaseException, limit: int, part_limit: int) -> tuple[str, bool]:
    """``traceback_text``, and whether anything was left out of it."""
    try:
        parts = traceback.format_exception(type(exc), exc, exc.__traceback__)
    except Exception:  # a __str__ that raises, say: the line that can still be made
        return error_line(exc, part_limit) + "\n", True
    whole = True
    for i, part in enumerate(parts):
        if len(part) > part_limit:
            parts[i] = cut(part, part_limit)
            whole = False
    text = "".join(parts)
    if len(text) > limit:
        note, keep = _note(len(text), limit, "[... {} characters of the traceback left out ...]\n")
        text = note + text[len(text) - keep :]
        whole = False
    return text, whole


def log_failure(
    level: int,
    message: str,
    args: tuple[Any, ...],
    exc: BaseException,
    extra: Mapping[str, object],
) -> None:
    """Log ``message % args`` with ``exc``'s traceback, bounded, as the caller's record.

    The bounded traceback is the record's ``exc_text``, which ``logging.Formatter`` prints
    instead of formatting ``exc_info`` itself. The record keeps ``exc_info`` (for handlers
    that want the exception object, such as Sentry's) unless the traceback had to be cut: a
    formatter of its own that reads ``exc_info`` could then still write it whole.
    """
    if not logger.isEnabledFor(level):
        return
    text, whole = _traceback(exc, TRACEBACK_CHARS, MESSAGE_CHARS)
    caller = sys._getframe(1)  # the record says where it was logged from, as logger.error does
    record = logger.makeRecord(
        logger.name,
        level,
        caller.f_code.co_filename,
        caller.f_lineno,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if whole else None,
        caller.f_code.co_name,
        dict(extra),
    )
    record.exc_text = text.rstrip("\n")
    logger.handle(record)
