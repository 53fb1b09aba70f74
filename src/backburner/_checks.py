"""Setting checks, shared by every module that takes a setting: a bad value fails where written.

Each check refuses with the builtin exception a user expects (``TypeError`` for the wrong kind,
``ValueError`` for a bad value) and a message that names the setting and what it means.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_QUEUE",
    "MAX_SECONDS",
    "check_count",
    "check_queue_name",
    "check_timeout",
    "too_long",
]

#: The queue a job goes to unless ``@job(queue=...)`` or ``options(queue=...)`` says otherwise.
DEFAULT_QUEUE = "default"

#: The longest span of time any setting, delay or option may give, in seconds: ten years (of
#: 365 days). Longer is a mistake (a unit mixed up, ``1e300``), not a plan for this process.
MAX_SECONDS = 10 * 365 * 24 * 3600


def check_count(name: str, value: object, meaning: str) -> None:
    """Refuse anything but an int of at least 1 (bools included: ``workers=True`` is a typo)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int ({meaning}), got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1 ({meaning}), got {value}")


def check_timeout(name: str, value: object) -> float:
    """Refuse anything but a number of seconds from 0 to ``MAX_SECONDS``; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, got {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(too_long(name, value))
    return float(value)


def too_long(name: str, value: object) -> str:
    """The message refusing a span of time longer than ``MAX_SECONDS``."""
    return (
        f"{name} must be at most {MAX_SECONDS} seconds (ten years), got {value!r}: "
        f"is the unit right?"
    )


def check_queue_name(name: object) -> str:
    """Queue names are non-empty strings; they show in logs, stats and the dashboard."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a queue name must be a non-empty str, got {name!r}")
    return name
