"""Settings, checked when they are given: a bad value fails at the line that wrote it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._remote import Engine

__all__ = ["MAX_SECONDS", "QueueConfig", "check_timeout"]

DEFAULT_QUEUE = "default"

#: The longest span of time any setting, delay or option may give, in seconds: ten years (of
#: 365 days). Longer is a mistake (a unit mixed up, ``1e300``), not a plan for this process.
MAX_SECONDS = 10 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """The size of one named queue: ``workers`` jobs at once, ``max_pending`` more waiting.

    Give each kind of work its own queue so that one cannot starve another (mail must not wait
    behind image resizing)::

        Backburner(queues={"mail": QueueConfig(workers=2), "images": QueueConfig(workers=4)})

    With ``engine=`` (a ``backburner.taskiq.TaskiqEngine``) the queue's jobs are sent to that
    engine's broker and run on its workers, other processes: ``workers`` is then how many
    sends run at once and ``max_pending`` how many jobs may wait to be sent.
    """

    workers: int = 4
    max_pending: int = 10_000
    engine: Engine | None = None

    def __post_init__(self) -> None:
        check_count("workers", self.workers, "the number of jobs this queue runs at once")
        check_count("max_pending", self.max_pending, "how many jobs may wait for a worker")
        check_engine(self.engine)


def check_engine(engine: object) -> None:
    """Refuse anything but None or a remote engine (such as ``TaskiqEngine``)."""
    from ._remote import Engine  # here: _remote imports this module

    if engine is not None and not isinstance(engine, Engine):
        raise TypeError(
            f"engine must be a remote engine such as backburner.taskiq.TaskiqEngine(broker), "
            f"got {type(engine).__name__} {engine!r}"
        )


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
