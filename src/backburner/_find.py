"""Finding a job the executor holds by its id: running, failed, waiting or waiting for its time.

A scheduled or retrying job is the argument of the scheduler entry that holds it until its
time, and that entry is the job's ``timer``: so the heap can be read without knowing who put
what there (periodic ticks and timeouts are entries too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._failures import FailedJobs
from ._job import Job, id_number
from ._ports import Queue
from ._scheduler import Scheduler, Timer
from ._status import JobStatus

__all__ = ["find_held", "find_running", "find_waiting", "holds_job", "timed_entries"]

_TIMED = (JobStatus.SCHEDULED, JobStatus.RETRYING)


def find_held(queues: Iterable[Queue], failures: FailedJobs, job_id: str) -> Job[Any] | None:
    """The running or failed job with this id: O(running jobs + failed ones). Loop thread."""
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a job's id (a str), got {type(job_id).__name__}")
    failed = failures.get(job_id)  # first: one lookup, and a dead list page asks for each row
    if failed is not None:
        return failed
    return find_running(queues, job_id)


def find_running(queues: Iterable[Queue], job_id: str) -> Job[Any] | None:
    """The running job with this id: O(running jobs). Loop thread."""
    number = id_number(job_id)
    for queue in queues:
        for job in queue.running_jobs():
            if job.has_id(job_id, number):
                return job
    return None


def find_waiting(
    queues: Iterable[Queue], scheduler: Scheduler | None, job_id: str
) -> Job[Any] | None:
    """The waiting (or held), scheduled or retrying job with this id: O(waiting + scheduled).

    Any thread (each queue's and the scheduler's lock is held only to copy what they hold).
    """
    # (Compared by number, not by `job.id`: that would make an id for every waiting job
    # that has none, and format a string for each, at every search.)
    number = id_number(job_id)
    for queue in queues:
        for job in queue.waiting_jobs():
            if job.has_id(job_id, number) and (job.status is JobStatus.PENDING or job.status.held):
                return job
    for _, job in timed_entries(scheduler):
        if job.has_id(job_id, number) and job.status in _TIMED:
            return job
    return None


def holds_job(timer: Timer) -> bool:
    """True if this scheduler entry holds a job until its time (not a tick or a timeout)."""
    job = timer.arg
    return isinstance(job, Job) and job.timer is timer


def timed_entries(scheduler: Scheduler | None) -> list[tuple[float, Job[Any]]]:
    """Every job waiting in the scheduler for its time, with its due time. O(heap)."""
    if scheduler is None:
        return []
    return [(when, timer.arg) for when, timer in scheduler.entries() if holds_job(timer)]
