"""Numeric query parameters: parsed strictly, then clamped into their range.

A value that is not a number is the client's mistake: a 400 that says which parameter and
what it takes. A number out of range is brought into it (``limit=10**6`` lists the most a page
may list), so a bookmark or a script never asks for more work than the dashboard allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request

__all__ = ["BadParameter", "Range", "read_float", "read_int"]

_MAX_DIGITS = 12  # longer is not a number anyone means, and int() of it costs time


class BadParameter(ValueError):
    """A query parameter that is not a number (answered with 400)."""


@dataclass(frozen=True, slots=True)
class Range:
    """A parameter's default and its bounds."""

    default: float
    low: float
    high: float


LIMIT = Range(50, 1, 200)
OFFSET = Range(0, 0, 1_000_000)
TIMED_OFFSET = Range(0, 0, 10_000)  # scheduled and retrying: each entry skipped is a heap visit
POLL = Range(2, 1, 60)  # seconds between two live updates
MINUTES = Range(10, 1, 10)  # how much history the charts show


def read_int(request: Request, name: str, bounds: Range) -> int:
    """The integer parameter ``name``, clamped into ``bounds``; its default if absent."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return int(bounds.default)
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdecimal()) or len(digits) > _MAX_DIGITS:
        raise BadParameter(
            f"{name} must be a whole number from {bounds.low:g} to {bounds.high:g}, "
            f"got {raw[:40]!r}"
        )
    return int(min(max(int(text), bounds.low), bounds.high))


def read_float(request: Request, name: str, bounds: Range) -> float:
    """The number parameter ``name``, clamped into ``bounds``; its default if absent."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return bounds.default
    try:
        value = float(raw) if len(raw) <= 24 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadParameter(
            f"{name} must be a number from {bounds.low:g} to {bounds.high:g}, got {raw[:40]!r}"
        )
    return min(max(value, bounds.low), bounds.high)
