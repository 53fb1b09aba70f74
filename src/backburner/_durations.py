"""How long jobs ran, in fixed buckets: the job-duration histogram's data, with or without
OpenTelemetry.

Each local queue counts its own attempts as they end (``JobQueue``: a comparison with the
first bound, or past it a bisect into ``BOUNDS``, then one increment and one addition, on the
loop thread); the exporters read the counts at scrape time (``cumulative``), so a scrape
costs the jobs nothing.
"""

from __future__ import annotations

__all__ = ["BOUNDS", "cumulative", "empty"]

#: The histogram's bucket bounds, in seconds: from a fast job's millisecond to ten minutes.
BOUNDS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
)  # fmt: skip


def empty() -> list[int]:
    """A count per bucket, all zero: one per bound, and the last for longer than every bound."""
    return [0] * (len(BOUNDS) + 1)


def cumulative(counts: list[int]) -> list[int]:
    """The count at or below each bound, then the total (``+Inf``), as Prometheus wants them."""
    result, running = [], 0
    for value in counts:
        running += value
        result.append(running)
    return result
