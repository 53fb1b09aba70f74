"""Looking inside a running executor: the jobs running, waiting, scheduled and retrying.

What the dashboard lists, in one place. Every function here takes the executor, reads it
without changing it, and is bounded by the caller's ``offset`` and ``limit`` except where it
says O(n); none is on the per-job path.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

from ._job import Job
from ._queue import JobQueue
from ._status import JobStatus

if TYPE_CHECKING:
    from ._executor import Backburner
    from ._history import Sample

__all__ = ["find_job", "history", "pending_jobs", "running_jobs", "timed_jobs", "wait_totals"]

_TIMED = (JobStatus.SCHEDULED, JobStatus.RETRYING)


def running_jobs(executor: Backburner, queue: str | None = None) -> list[Job[Any]]:
    """The jobs holding a worker now (of one queue, or all), the longest-running first."""
    jobs = [job for q in _queues(executor, queue) for job in q.running_jobs()]
    # A job whose task has not run yet has no start time: it goes last.
    jobs.sort(key=lambda job: (job.started_at or math.inf, job._seq))
    return jobs


def pending_jobs(
    executor: Backburner, queue: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Job[Any]], int]:
    """Waiting jobs in the order each queue starts them, and how many wait in all.

    With several queues, each queue's jobs follow the previous queue's (queues run side by
    side, so there is no single order across them).
    """
    queues = _queues(executor, queue)
    total = sum(q.stats().pending for q in queues)
    jobs: list[Job[Any]] = []
    for q in queues:
        if len(jobs) >= limit:
            break
        waiting = q.stats().pending
        if offset >= waiting:
            offset -= waiting
            continue
        jobs += q.pending_jobs(offset, limit - len(jobs))
        offset = 0
    return jobs, total


def timed_jobs(
    executor: Backburner,
    status: JobStatus,
    queue: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Job[Any]], int]:
    """Scheduled (or retrying) jobs, the soonest due first, and how many there are.

    O(n log(offset + limit)) over the scheduler's entries: a copy of its heap, scanned.
    """
    if status not in _TIMED:
        raise ValueError(f"status must be JobStatus.SCHEDULED or JobStatus.RETRYING, got {status}")
    _queues(executor, queue)  # checks the name
    jobs = [
        (when, job)
        for when, job in _timed_entries(executor)
        if job._status is status and (queue is None or job.queue == queue)
    ]
    soonest = heapq.nsmallest(offset + limit, jobs, key=lambda entry: (entry[0], entry[1]._seq))
    return [job for _, job in soonest[offset:]], len(jobs)


def find_job(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The job with this id if the executor still holds it: running, waiting, scheduled,
    retrying, or in ``failures()``. O(running + waiting + scheduled jobs)."""
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a job's id (a str), got {type(job_id).__name__}")
    for queue in executor._queues.values():
        for job in queue.running_jobs():
            if job.id == job_id:
                return job
    failed = executor._failures.get(job_id)
    if failed is not None:
        return failed
    for queue in executor._queues.values():
        found = queue.find_pending(job_id)
        if found is not None:
            return found
    for _, job in _timed_entries(executor):
        if job.id == job_id and job._status in _TIMED:
            return job
    return None


def wait_totals(executor: Backburner) -> dict[str, tuple[int, float]]:
    """Per queue: jobs started since the executor started, and the seconds they waited."""
    totals = {name: (0, 0.0) for name in executor.queue_configs}
    for name, queue in executor._queues.items():
        totals[name] = queue.wait_totals()
    return totals


def history(executor: Backburner) -> dict[str, list[Sample]]:
    """Each queue's activity over the last minutes, oldest first (see ``_history.History``)."""
    return executor._history.series()


def _queues(executor: Backburner, name: str | None) -> list[JobQueue]:
    if name is None:
        return list(executor._queues.values())
    if name not in executor.queue_configs:
        raise ValueError(
            f"no queue named {name!r}; this executor has {sorted(executor.queue_configs)}"
        )
    queue = executor._queues.get(name)
    return [] if queue is None else [queue]


def _timed_entries(executor: Backburner) -> list[tuple[float, Job[Any]]]:
    scheduler = executor.scheduler
    if scheduler is None:
        return []
    return [
        (when, timer.arg)
        for when, timer in scheduler.entries()
        # A queue's _due holds a job until its time; other entries are ticks and timeouts.
        if getattr(timer.callback, "__func__", None) is JobQueue._due and isinstance(timer.arg, Job)
    ]
