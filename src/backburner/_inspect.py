"""Looking inside a running executor: the jobs running, waiting, scheduled and retrying.

What the dashboard lists, in one place. Every function here takes the executor, reads it
without changing it, and is bounded by the caller's ``offset`` and ``limit`` except where it
says O(n); none is on the per-job path.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._job import Job
from ._queue import JobQueue
from ._scheduler import Timer
from ._status import JobStatus

if TYPE_CHECKING:
    from ._executor import Backburner
    from ._history import Sample

__all__ = ["find_job", "history", "pending_jobs", "running_jobs", "timed_jobs", "wait_totals"]

_TIMED = (JobStatus.SCHEDULED, JobStatus.RETRYING)
#: The most heap entries one timed listing visits (more when it lists more than half this).
MAX_VISITS = 40_000


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
    counts = [q.stats().pending for q in queues]  # read once: the total and the pages agree
    total = sum(counts)
    jobs: list[Job[Any]] = []
    for q, waiting in zip(queues, counts, strict=True):
        if len(jobs) >= limit:
            break
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
) -> tuple[list[Job[Any]], int, bool]:
    """Scheduled (or retrying) jobs, the soonest due first; how many there are; and whether
    the listing is complete (False: the walk stopped at its bound, see ``MAX_VISITS``).

    A best-first walk of the scheduler's heap (``Scheduler.soonest``): O(k log k) for
    k = offset + limit when most entries are of the kind asked for, never more than
    ``max(MAX_VISITS, 2k)`` entries visited whatever the schedule's size. The counts come
    from the queues' counters: asking for retries when there are none costs nothing.
    """
    if status not in _TIMED:
        raise ValueError(f"status must be JobStatus.SCHEDULED or JobStatus.RETRYING, got {status}")
    queues = _queues(executor, queue)  # checks the name
    retrying = status is JobStatus.RETRYING
    total = sum(q._retrying if retrying else q._scheduled - q._retrying for q in queues)
    scheduler = executor.scheduler
    if total <= offset or limit <= 0 or scheduler is None:
        return [], total, True

    def accept(timer: Timer) -> bool:
        # A queue's _due holds a job until its time; other entries are ticks and timeouts.
        job = timer.arg
        return (
            getattr(timer.callback, "__func__", None) is JobQueue._due
            and isinstance(job, Job)
            and job._status is status
            and (queue is None or job.queue == queue)
        )

    wanted = offset + limit
    found, complete = scheduler.soonest(accept, wanted, max(MAX_VISITS, 2 * wanted))
    return [timer.arg for _, timer in found[offset:]], total, complete


def find_job(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The job with this id if the executor still holds it: running, waiting, scheduled,
    retrying, or in ``failures()``. O(running + waiting + scheduled jobs)."""
    return find_held(executor, job_id) or find_waiting(executor, job_id)


def find_held(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The running or failed job with this id: O(running jobs + ``keep_failed``). Loop thread."""
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a job's id (a str), got {type(job_id).__name__}")
    for queue in executor._queues.values():
        for job in queue.running_jobs():
            if job.id == job_id:
                return job
    return executor._failures.get(job_id)


def find_waiting(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The waiting, scheduled or retrying job with this id: O(waiting + scheduled jobs).

    Any thread (each queue's and the scheduler's lock is held only to copy what they hold),
    so the dashboard runs it off the event loop.
    """
    for queue in executor._queues.values():
        for job in queue.waiting_jobs():
            if job._status is JobStatus.PENDING and job.id == job_id:
                return job
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
    executor._check_queue_name(name)
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
