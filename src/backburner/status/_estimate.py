"""When to ask again: the ``Retry-After`` of a job's status, estimated from what is known.

* **Running**, with progress: the job's own ``eta`` (its rate since its first report).
  Without progress: the queue's mean time per job less the time this one has run, if that is
  still ahead; else nothing is known.
* **Waiting for a worker** at ``position`` (0: next): ``(position + 1)`` jobs must end
  before it starts, and the queue's workers end ``workers / service_time`` jobs a second, so
  ``(position + 1) * service_time / workers`` seconds. ``service_time`` is the mean seconds a
  job held a worker over the last minute (ten, if none ended in the last one), by Little's
  law: the mean number of busy workers (sampled every 5 s) over the jobs ended per second.
  It is the queue's capacity, not the rate jobs happened to arrive at. A paused queue starts
  nothing: the upper bound.
* **Scheduled or retrying**: the seconds until it is due, if known.
* **Finished**: 0, nothing is left to wait for.

Anything not known gives ``UNKNOWN`` seconds. The answer is rounded up to whole seconds and
kept within ``bounds`` (1 to 60 s by default): never a busy loop, never silence for long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._history import Sample
from .._status import JobStatus

__all__ = ["BOUNDS", "UNKNOWN", "Pace", "check_bounds", "pace_of", "retry_after"]

#: The default bounds of an estimate, in seconds.
BOUNDS = (1.0, 60.0)
#: The estimate when nothing better is known, in seconds.
UNKNOWN = 2.0
#: How far back "recent" looks first, in seconds, before the whole history.
RECENT = 60.0


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast a queue's workers have been ending jobs lately."""

    #: Jobs ended per second over the samples read.
    throughput: float
    #: Mean seconds a job held a worker (Little's law); 0 if no worker was ever seen busy.
    service_time: float
    workers: int

    def wait(self, position: int) -> float:
        """Seconds until the job at ``position`` among the waiting ones gets a worker."""
        return (position + 1) * self.service_time / max(1, self.workers)


def pace_of(samples: Sequence[Sample], workers: int, now: float) -> Pace | None:
    """The pace of the last minute's samples (or all of them); None if no job ended in them."""
    for since in (now - RECENT, -math.inf):
        recent = [sample for sample in samples if sample.at > since]
        seconds = sum(sample.seconds for sample in recent)
        ended = sum(sample.processed for sample in recent)
        if ended > 0 and seconds > 0:
            throughput = ended / seconds
            busy = sum(sample.busy * sample.seconds for sample in recent) / seconds
            return Pace(throughput, busy / throughput, workers)
    return None


def check_bounds(bounds: object) -> tuple[float, float]:
    """``(low, high)``: finite seconds, ``0 <= low <= high``; else ``TypeError``/``ValueError``."""
    if not (isinstance(bounds, tuple) and len(bounds) == 2):
        raise TypeError(f"bounds must be a (low, high) tuple of seconds, got {bounds!r}")
    low, high = bounds
    for value in bounds:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"bounds must be a (low, high) tuple of seconds, got {bounds!r}")
    if not (math.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"bounds must be finite seconds with 0 <= low <= high, got {bounds!r}")
    return float(low), float(high)


def retry_after(
    status: JobStatus,
    *,
    eta: float | None = None,
    running_for: float | None = None,
    position: int | None = None,
    due_in: float | None = None,
    pace: Pace | None = None,
    paused: bool = False,
    bounds: tuple[float, float] = BOUNDS,
) -> int:
    """The whole seconds to send in ``Retry-After`` for a job in ``status`` (see the module)."""
    low, high = bounds
    if status.finished:  # (an expired tombstone too)
        return 0
    seconds = _estimate(status, eta, running_for, position, due_in, pace, paused, high)
    if seconds is None or not math.isfinite(seconds):
        seconds = UNKNOWN
    return int(min(math.ceil(high), max(math.ceil(low), math.ceil(seconds))))


def _estimate(
    status: JobStatus,
    eta: float | None,
    running_for: float | None,
    position: int | None,
    due_in: float | None,
    pace: Pace | None,
    paused: bool,
    high: float,
) -> float | None:
    if status is JobStatus.RUNNING:
        if eta is not None:
            return eta
        if pace is not None and running_for is not None and pace.service_time > running_for:
            return pace.service_time - running_for
        return None
    if status is JobStatus.PENDING:
        if paused:
            return high
        if pace is None or position is None:
            return None
        return pace.wait(position)
    # Scheduled, retrying: due at a known time, or not known.
    return due_in
