"""The dead list: the last failed jobs, kept for inspection, retry or discard."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ._job import Job

__all__ = ["FailedJobs"]


class FailedJobs:
    """Failed and dead jobs, oldest first, at most ``limit`` of them (the oldest go first).

    Every job here was already reported (logged with its traceback, handed to ``on_error``)
    when it failed: what falls off the end of this list was not dropped silently.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: OrderedDict[str, Job[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job[Any]) -> None:
        """Keep ``job``, dropping the oldest beyond the limit."""
        if not self.limit:
            return
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.limit:
                self._jobs.popitem(last=False)

    def take(self, job: Job[Any] | str) -> Job[Any] | None:
        """Remove and return the job (given as a job or an id), or None if it is not here."""
        key = job if isinstance(job, str) else job.id
        with self._lock:
            return self._jobs.pop(key, None)

    def take_all(self) -> list[Job[Any]]:
        """Remove and return every job, oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        return jobs

    def get(self, job_id: str) -> Job[Any] | None:
        """The kept job with this id, if any."""
        return self._jobs.get(job_id)

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)
