"""``accepted(job, status_url)``: the ``202 Accepted`` answer to the request that enqueued a job."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from .._errors import NotRunning
from .._executor import Backburner
from .._job import Job
from .._progress import Progress
from .._proxy import current_executor
from .._status import JobStatus
from ._body import dumps
from ._estimate import BOUNDS, Pace, check_bounds, pace_of, retry_after

__all__ = ["accepted"]

_now = time.time  # the wall clock progress reports are timed on


def accepted(
    job: Job[Any],
    status_url: str,
    *,
    bg: Backburner | None = None,
    bounds: tuple[float, float] = BOUNDS,
) -> Response:
    """``202 Accepted`` for ``job``: ``Location: status_url`` and an honest ``Retry-After``.

    The body is ``{"id": ..., "status": ..., "status_url": ...}`` as JSON. ``Retry-After``
    (whole seconds, within ``bounds``) is when the job is likely to have moved on: if it runs,
    from its progress rate (``eta``), else from the queue's mean time per job; if it waits for
    a worker, from the jobs ahead of it (the queue's pending jobs: ``accepted`` answers the
    request that just enqueued it, so it is last in line) and the pace at which the queue's
    workers ended jobs lately; if it waits for its time, the time left; 0 once it ended. See
    ``backburner.status`` for the arithmetic. ``bg`` is the job's executor, by default the one
    ``background`` finds.
    """
    if not isinstance(job, Job):
        raise TypeError(f"accepted() takes the Job that enqueue returned, got {type(job).__name__}")
    if not isinstance(status_url, str) or not status_url:
        raise TypeError(f"status_url must be a non-empty str, got {status_url!r}")
    if any(char in status_url for char in "\r\n\0"):
        raise ValueError(f"status_url cannot hold a line break or NUL: {status_url!r}")
    seconds = retry_after_of(job, bg, check_bounds(bounds))
    headers = {"Location": status_url, "Retry-After": str(seconds), "Cache-Control": "no-store"}
    body = {"id": job.id, "status": job.status.value, "status_url": status_url}
    return Response(dumps(body), 202, headers, "application/json")


def retry_after_of(job: Job[Any], bg: Backburner | None, bounds: tuple[float, float]) -> int:
    """The ``Retry-After`` seconds for ``job``, from its handle and its queue's recent pace.

    A waiting job is taken to be last in line (``accepted`` answers the request that enqueued
    it): its position is its queue's pending count less one, read in O(1).
    """
    try:
        executor = bg if bg is not None else current_executor()
    except NotRunning:  # (a testing mode catches jobs where no executor runs: nothing to read)
        executor = None
    due_in = None
    if job.run_at is not None and executor is not None:
        due_in = job.run_at - executor.clock.now()
    return estimate(
        executor,
        job.status,
        job.queue,
        job.progress,
        job.started_at,
        position=None,
        due_in=due_in,
        bounds=bounds,
    )


def estimate(
    executor: Backburner | None,
    status: JobStatus,
    queue_name: str,
    progress: Progress | None,
    started_at: float | None,
    *,
    position: int | None,
    due_in: float | None,
    bounds: tuple[float, float],
) -> int:
    """``retry_after`` for a job in ``status`` on ``queue_name``, with its queue's pace read
    from ``executor`` (its history and stats); ``position`` None for a pending job: last."""
    if status.finished:
        return 0
    pace: Pace | None = None
    paused = False
    queue = executor.queues().get(queue_name) if executor is not None else None
    if executor is not None and queue is not None:
        stats = queue.stats()
        paused = stats.paused
        if position is None and status is JobStatus.PENDING:
            position = max(0, stats.pending - 1)
        samples = executor.history.series().get(queue_name, ())
        pace = pace_of(samples, stats.workers, executor.clock.now())
    now = _now()
    return retry_after(
        status,
        eta=eta_now(progress, now),
        running_for=None if started_at is None else now - started_at,
        position=position,
        due_in=due_in,
        pace=pace,
        paused=paused,
        bounds=bounds,
    )


def eta_now(progress: Progress | None, now: float) -> float | None:
    """Seconds left from ``now`` by the job's own rate (its ``eta`` counts from its report);
    None if not known, or if the job is already behind it (then its rate says nothing)."""
    eta = None if progress is None else progress.eta
    if progress is None or eta is None or eta == 0:
        return eta
    left = eta - (now - progress.updated_at)
    return left if left > 0 else None
