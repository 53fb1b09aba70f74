"""Attempt durations in fixed buckets: the Prometheus histogram, without OpenTelemetry.

Kept apart from ``_meters.py`` so that the dashboard can read the bounds whether or not
``opentelemetry`` is installed.
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["BOUNDS", "Durations"]

#: The histogram's bucket bounds, in seconds: from a fast job's millisecond to ten minutes.
BOUNDS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
)  # fmt: skip


class Durations:
    """Attempt durations per queue in fixed buckets (``BOUNDS``): a Prometheus histogram."""

    __slots__ = ("queues",)

    def __init__(self) -> None:
        #: queue -> [count per bucket (the last: past every bound), sum of seconds, count].
        self.queues: dict[str, list[Any]] = {}

    def record(self, queue: str, seconds: float) -> None:
        """One attempt of ``queue`` took ``seconds``. Loop thread."""
        entry = self.queues.get(queue)
        if entry is None:
            entry = self.queues[queue] = [[0] * (len(BOUNDS) + 1), 0.0, 0]
        entry[0][bisect.bisect_left(BOUNDS, seconds)] += 1
        entry[1] += seconds
        entry[2] += 1

    def snapshot(self) -> dict[str, tuple[list[int], float, int]]:
        """Per queue: the cumulative count at each bound then +Inf, the sum and the count."""
        result = {}
        for queue, (buckets, total, count) in list(self.queues.items()):
            cumulative, running = [], 0
            for value in list(buckets):
                running += value
                cumulative.append(running)
            result[queue] = (cumulative, total, count)
        return result
