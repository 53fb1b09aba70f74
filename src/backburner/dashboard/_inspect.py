"""Looking inside a running executor: the jobs running, waiting, scheduled and retrying.

What the dashboard lists, in one place. Every function here takes the executor and reads it
through its public surface (``queues()``, ``scheduler``, ``find_job``, ``history``) without
changing it, bounded by the caller's ``offset`` and ``limit`` except where it says O(n);
none is on the per-job path.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any

from .. import _find
from .._executor import Backburner
from .._find import holds_job
from .._history import Sample
from .._job import Job
from .._ports import Queue
from .._scheduler import Timer
from .._status import JobStatus

__all__ = [
    "check_queue",
    "find_held",
    "find_waiting",
    "held_jobs",
    "history",
    "pending_jobs",
    "running_jobs",
    "timed_jobs",
    "wait_totals",
]

_TIMED = (JobStatus.SCHEDULED, JobStatus.RETRYING)
#: The most heap entries one timed listing visits (more when it lists more than half this).
MAX_VISITS = 40_000


def held_jobs(executor: Backburner, limit: int) -> list[Job[Any]]:
    """The jobs a limit holds (blocked or throttled), oldest first, at most ``limit``."""
    # Each queue's list is in order already (within a millisecond, which jobs accepted in it
    # share as their enqueue time, by their place in line): merged, it stays so.
    lists = [q.held_jobs(limit) for q in executor.queues().values()]
    merged = heapq.merge(*lists, key=lambda job: job.enqueued_at)
    return list(itertools.islice(merged, limit))


def running_jobs(executor: Backburner, queue: str | None = None) -> list[Job[Any]]:
    """The jobs holding a worker now (of one queue, or all), the longest-running first."""
    jobs = [job for q in _queues(executor, queue) for job in q.running_jobs()]
    # A job whose task has not run yet has no start time: it goes last.
    jobs.sort(key=lambda job: (job.started_at or math.inf, job.enqueued_at))
    return jobs


def pending_jobs(
    executor: Backburner, queue: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Job[Any]], int]:
    """Waiting jobs in the order each queue starts them, and how many wait in all.

    With several queues, each queue's jobs follow the previous queue's (queues run side by
    side, so there is no single order across them).
    """
    queues = _queues(executor, queue)
    # Read once, so the total and the pages agree (held jobs are listed apart: not here).
    counts = [(s := q.stats()).pending - s.held for q in queues]
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
    counts = [q.timed_counts() for q in queues]
    total = sum(retries if retrying else timed - retries for timed, retries in counts)
    scheduler = executor.scheduler
    if total <= offset or limit <= 0 or scheduler is None:
        return [], total, True

    def accept(timer: Timer) -> bool:
        # Entries that hold a job until its time; others are ticks and timeouts.
        return (
            holds_job(timer)
            and timer.arg.status is status
            and (queue is None or timer.arg.queue == queue)
        )

    wanted = offset + limit
    found, complete = scheduler.soonest(accept, wanted, max(MAX_VISITS, 2 * wanted))
    return [timer.arg for _, timer in found[offset:]], total, complete


def find_held(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The running or failed job with this id: O(running jobs + ``keep_failed``). Loop thread."""
    return executor.find_job(job_id, waiting=False)


def find_waiting(executor: Backburner, job_id: str) -> Job[Any] | None:
    """The waiting, scheduled or retrying job with this id: O(waiting + scheduled jobs).

    Any thread, so the dashboard runs it off the event loop.
    """
    return _find.find_waiting(executor.queues().values(), executor.scheduler, job_id)


def wait_totals(executor: Backburner) -> dict[str, tuple[int, float]]:
    """Per queue: jobs started since the executor started, and the seconds they waited."""
    totals = {name: (0, 0.0) for name in executor.queue_configs}
    for name, queue in executor.queues().items():
        totals[name] = queue.wait_totals()
    return totals


def history(executor: Backburner) -> dict[str, list[Sample]]:
    """Each queue's activity over the last minutes, oldest first (see ``_history.History``)."""
    return executor.history.series()


def check_queue(executor: Backburner, name: str) -> None:
    """Raise ``ValueError`` if the executor has no queue ``name``."""
    if name not in executor.queue_configs:
        raise ValueError(
            f"no queue named {name!r}; this executor has {sorted(executor.queue_configs)}"
        )


def _queues(executor: Backburner, name: str | None) -> list[Queue]:
    queues = executor.queues()
    if name is None:
        return list(queues.values())
    check_queue(executor, name)
    queue = queues.get(name)
    return [] if queue is None else [queue]
