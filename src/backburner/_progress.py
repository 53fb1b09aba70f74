"""A job's progress: what ``current_job().set_progress(...)`` reports, and the snapshot of it.

``set_progress`` may be called in a job's tightest loop, on the event loop or on the job's
thread, so a report is one checked tuple stored in one assignment (atomic under the GIL: a
reader on another thread sees one whole report, never half of two). Reports coalesce: only
the latest is kept, nobody is woken, and a ``Progress`` is built only when someone reads it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

__all__ = ["MAX_MESSAGE", "NUMBERS", "Progress", "ProgressCell", "check_report"]

#: The types of ``done`` and ``total`` checked inline (anything else takes ``check_report``).
NUMBERS = frozenset({int, float})

#: The longest progress message, in characters: a line for a person to read. Every kept job
#: holds its last one, and the status app sends it to each watching client at each change.
MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a job has come, as it last said (``current_job().set_progress``).

    ``done`` out of ``total`` (None: the job did not say how much there is), with an optional
    ``message``; ``updated_at`` is the wall-clock time (``time.time()``) of that report.
    """

    done: float
    total: float | None
    message: str | None
    updated_at: float
    #: Units done per second since the first report of this attempt (None: not known yet).
    rate: float | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float | None:
        """``done / total``, from 0 to 1; None without a total (1.0 when the total is 0)."""
        total = self.total
        if total is None:
            return None
        return 1.0 if total == 0 else self.done / total

    @property
    def eta(self) -> float | None:
        """Seconds left after ``updated_at``, from the rate since the attempt's first report.

        None when it cannot be told: no total, a single report so far, or no headway since
        the first one. 0.0 once everything is done.
        """
        total, rate = self.total, self.rate
        if total is None:
            return None
        left = total - self.done
        if left <= 0:
            return 0.0
        if rate is None or rate <= 0:
            return None
        return left / rate


class ProgressCell:
    """Where one attempt of a job keeps its latest report. Written by the job (through
    ``CurrentJob.set_progress``, which checks each report), read by anyone."""

    __slots__ = ("attempt", "first", "latest")

    def __init__(self, attempt: int) -> None:
        #: The attempt these reports belong to: a retry starts a cell of its own.
        self.attempt = attempt
        #: (done, at) of the attempt's first report: the start of the rate.
        self.first: tuple[float, float] | None = None
        #: (done, total, message, at) of the latest report.
        self.latest: tuple[float, float | None, str | None, float] | None = None

    def snapshot(self) -> Progress | None:
        """The latest report as a ``Progress``, or None before the first."""
        latest, first = self.latest, self.first
        if latest is None:
            return None
        done, total, message, at = latest
        rate = None
        if first is not None and at > first[1]:
            rate = (done - first[0]) / (at - first[1])
        return Progress(done, total, message, at, rate)


def check_report(
    done: object, total: object, message: object
) -> tuple[float, float | None, str | None]:
    """Refuse a bad report where it is made: ``TypeError`` or ``ValueError`` saying why."""
    done = _number("done", done)
    if total is not None:
        total = _number("total", total)
        if done > total:
            raise ValueError(
                f"set_progress: done ({done:g}) is more than total ({total:g}); raise total "
                f"(or pass total=None if the amount of work is not known)"
            )
    if message is not None and not isinstance(message, str):
        raise TypeError(
            f"set_progress: message must be a str or None, got {type(message).__name__} {message!r}"
        )
    if message is not None and len(message) > MAX_MESSAGE:
        raise ValueError(
            f"set_progress: message is {len(message):,} characters long, more than "
            f"{MAX_MESSAGE:,}; a progress message is a line for a person (the status app "
            f"sends it to every watching client): log longer text, or keep it in the result"
        )
    if message is not None and not message.isascii():
        try:
            message.encode()
        except UnicodeEncodeError as exc:
            # A lone surrogate (a file name read with surrogateescape, say): kept, it would
            # break every JSON answer and event that carries the job's progress.
            raise ValueError(
                f"set_progress: message cannot be encoded as UTF-8 ({exc.reason} at index "
                f"{exc.start}: {message[exc.start : exc.end]!r}); decode the text it comes from "
                f"with errors='replace' (a file name: os.fsencode(name).decode(errors='replace'))"
            ) from None
    return done, total, message


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"set_progress: {name} must be a number (int or float), got "
            f"{type(value).__name__} {value!r}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float (10**400): no finite number
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"set_progress: {name} must be a finite number, 0 or more, got {value!r}")
    return value if type(value) in NUMBERS else number  # type: ignore[return-value]
