"""Unique jobs: one live job per key, executor-wide."""

from __future__ import annotations

import threading
from typing import Any

from ._errors import DuplicateJob
from ._job import Job
from ._status import JobStatus

__all__ = ["UniqueKeys"]

_SCHEDULED = JobStatus.SCHEDULED


class UniqueKeys:
    """Which live job holds each unique key. Safe from any thread.

    A key is held from enqueue until the job ends for good: while it is scheduled, pending,
    running or waiting to retry. Then the next enqueue with that key makes a new job.
    """

    def __init__(self) -> None:
        self._holders: dict[str, Job[Any]] = {}
        self._lock = threading.Lock()

    def claim(self, job: Job[Any]) -> Job[Any] | None:
        """Give ``job`` its key; if a live job holds it, return that job (or raise)."""
        key = job.unique_key
        assert key is not None
        with self._lock:
            holder = self._holders.get(key)
            if holder is not None and not holder.done():
                # A debounced job still waiting for its time takes the new call instead.
                waits = job.options.debounce is not None and holder.status is _SCHEDULED
                if job.options.on_duplicate == "raise" and not waits:
                    raise DuplicateJob(key, holder)
                return holder
            self._holders[key] = job
        return None

    def release(self, job: Job[Any]) -> None:
        """Free ``job``'s key, if it still holds it."""
        with self._lock:
            if job.unique_key is not None and self._holders.get(job.unique_key) is job:
                del self._holders[job.unique_key]

    def __len__(self) -> int:
        return len(self._holders)
