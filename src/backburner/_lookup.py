"""``lookup(job_id)``: a snapshot of any job by its id, whatever its state; ``find_job``.

Where it looks, cheapest first: the ``ResultStore`` (finished jobs and tombstones, O(1) once
indexed: the only answer for a job that has ended, failed ones too), the running jobs
(O(running)), then the waiting ones (O(pending +
scheduled) comparisons of numbers, which make no id for a job that has none: about 0.6 ms at
10,000 waiting jobs; with the pending job's place in its queue). It is async so that a store
may ask elsewhere (issue 14: a journal shared by processes), and it reads the queues on the
executor's loop thread, as they must be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._failures import FailedJobs
from ._find import find_held, find_running, find_waiting
from ._info import JobInfo
from ._job import Job
from ._ports import Queue, ResultStore, SharedJobs
from ._results import info_of
from ._scheduler import Scheduler
from ._status import JobStatus

__all__ = ["Lookup"]

_PENDING = JobStatus.PENDING


class Holder(Protocol):
    """What a lookup reads of the executor, as it is at each lookup."""

    loop: asyncio.AbstractEventLoop | None
    scheduler: Scheduler | None

    def queues(self) -> Mapping[str, Queue]: ...


class Lookup:
    """Finds a job by id in the store, the queues and the schedule of one executor."""

    def __init__(self, store: ResultStore, failures: FailedJobs, holder: Holder) -> None:
        self.store = store
        self._failures = failures
        self._holder = holder
        #: Asked last, for a job this executor does not hold: a journal other processes share.
        self.elsewhere: SharedJobs | None = None

    def find(self, job_id: str, *, waiting: bool = True) -> Job[Any] | None:
        """The job with this id that the executor holds, or None (see ``Backburner.find_job``)."""
        queues = list(self._holder.queues().values())
        found = find_held(queues, self._failures, job_id)
        if found is None and waiting:
            found = find_waiting(queues, self._holder.scheduler, job_id)
        return found

    async def lookup(self, job_id: str) -> JobInfo | None:
        """The job with this id as it is now, or None if this executor knows no such job."""
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be a job's id (a str), got {type(job_id).__name__}")
        loop = self._holder.loop
        if loop is not None and loop.is_running() and loop is not asyncio.get_running_loop():
            # The queues are read on their own loop's thread (a TestClient's app runs in
            # another thread than the test's).
            future = asyncio.run_coroutine_threadsafe(self._find(job_id), loop)
            return await asyncio.wrap_future(future)
        return await self._find(job_id)

    async def _find(self, job_id: str) -> JobInfo | None:
        found = await self.store.lookup(job_id)
        if found is None:
            found = self._live(job_id)
            if found is None:  # it may have ended while the store was asked
                found = await self.store.lookup(job_id)
        if found is None and self.elsewhere is not None:
            found = await self.elsewhere.lookup(job_id)  # another process's job, say
        return found

    def _live(self, job_id: str) -> JobInfo | None:
        queues = list(self._holder.queues().values())
        # Not the dead list's failures: a job that has ended is the store's to answer (it was
        # kept there before it was listed), and once the store has let it go (expired, then
        # forgotten) lookup says so, though the dead list may keep it longer.
        job = find_running(queues, job_id)
        if job is not None:
            return info_of(job)
        job = find_waiting(queues, self._holder.scheduler, job_id)
        if job is None:
            return None
        position = None
        if job.status is _PENDING:
            position = _position(queues, job)
        return info_of(job, position=position)


def _position(queues: Iterable[Queue], job: Job[Any]) -> int | None:
    for queue in queues:
        if queue.name == job.queue:
            place = 0
            for waiting in queue.waiting_jobs():
                if waiting is job:
                    return place
                place += waiting.status is _PENDING
    return None
