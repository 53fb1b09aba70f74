"""What each page shows, as JSON-ready dicts (the pages render them; the API returns them),
and the actions, each one call on the executor.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import anyio
import anyio.to_thread

from .._errors import BackburnerError
from .._executor import Backburner
from .._info import JobInfo
from .._job import Job
from .._journal._shared import JobRow, rebuild
from .._stats import YieldStats
from .._status import JobStatus
from . import _inspect
from ._present import Presenter, printable, truncate

__all__ = ["ACTIONS", "ActionError", "Views"]

#: The actions, each with the form fields it needs.
ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": ("queue",),
    "resume": ("queue",),
    "retry": ("job",),
    "discard": ("job",),
    "retry-all": (),
    "discard-all": (),
    "trigger": ("name",),
    "cancel": ("job",),
}
_HELD_SHOWN = 20  # held jobs the overview lists (the oldest)
_SEEN = 500  # finished jobs the dashboard showed and still describes on their own page
_MISSES = 256  # ids looked up in vain, remembered...
_MISS_TTL = 2.0  # ...this many seconds (an id a job was given is found by then)


class ActionError(Exception):
    """An action that cannot be done (unknown job, queue...): its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Views:
    """Builds each page's data from the executor, and does the actions."""

    def __init__(self, presenter: Presenter) -> None:
        self.present = presenter
        # Jobs shown lately, so that a job that finished while someone watched it still has a
        # page (the executor keeps only failures once a job ends). Bounded; newest last.
        self._seen: OrderedDict[str, Job[Any]] = OrderedDict()
        self._finder = _Finder()

    # Pages.

    def overview(self, bg: Backburner, minutes: float) -> dict[str, Any]:
        """Every queue's counters, the totals, and the history the charts draw."""
        stats = bg.stats()
        since = bg.clock.now() - minutes * 60  # samples are stamped with the executor's clock
        history = _inspect.history(bg)
        return {
            "now": time.time(),
            "running": bg.running,
            "queues": [_queue(q.as_dict()) for q in stats.queues.values()],
            "total": _queue(stats.total.as_dict()),
            "failures": len(bg.failures()),
            "periodic": len(stats.periodic),
            "yielding": None if stats.yielding is None else _yielding(stats.yielding),
            "interval": bg.history.interval,
            "minutes": minutes,
            "limits": [
                {**asdict(limit), "name": truncate(printable(limit.name), 200)}
                for limit in stats.limits
            ],
            "held": [
                self.present.job(job, in_failures=False)
                for job in _inspect.held_jobs(bg, _HELD_SHOWN)
            ],
            "history": {
                # Whole names: the page finds a queue's chart by the queue's name.
                printable(name): [asdict(s) for s in samples if s.at >= since]
                for name, samples in history.items()
            },
        }

    def busy(self, bg: Backburner, queue: str | None, offset: int, limit: int) -> dict[str, Any]:
        """The jobs running now, the longest-running first (O(running jobs): the workers)."""
        jobs = _inspect.running_jobs(bg, queue)
        return self._listing(bg, jobs[offset : offset + limit], len(jobs), offset, limit, queue)

    def pending(self, bg: Backburner, queue: str | None, offset: int, limit: int) -> dict[str, Any]:
        """The jobs waiting for a worker, in the order they will start."""
        jobs, total = _inspect.pending_jobs(bg, queue, offset, limit)
        return self._listing(bg, jobs, total, offset, limit, queue)

    def timed(
        self, bg: Backburner, status: JobStatus, queue: str | None, offset: int, limit: int
    ) -> dict[str, Any]:
        """Scheduled or retrying jobs, the soonest due first."""
        jobs, total, complete = _inspect.timed_jobs(bg, status, queue, offset, limit)
        return self._listing(bg, jobs, total, offset, limit, queue, complete)

    def dead(self, bg: Backburner, queue: str | None, offset: int, limit: int) -> dict[str, Any]:
        """``failures()``, the newest first."""
        if queue is not None:
            _inspect.check_queue(bg, queue)
        failures = [j for j in reversed(bg.failures()) if queue is None or j.queue == queue]
        return self._listing(
            bg, failures[offset : offset + limit], len(failures), offset, limit, queue
        )

    def periodic(self, bg: Backburner) -> dict[str, Any]:
        """Each periodic job's schedule, last and next run."""
        return {
            "now": time.time(),
            "periodic": [
                {
                    **asdict(p),
                    "name": printable(p.name),  # whole: the trigger form sends it back
                    "label": truncate(p.name, 200),  # `name` stays whole for the trigger form
                    "schedule": truncate(p.schedule, 200),
                    "queue": truncate(p.queue, 200),
                }
                for p in bg.stats().periodic
            ],
        }

    async def job(self, bg: Backburner, job_id: str) -> dict[str, Any] | None:
        """One job, in full; None if neither the executor nor this dashboard knows it.

        A job this dashboard showed lately is found at once (its page polls); so is a running,
        failed or kept finished one (``keep_results``). Only an id seen nowhere costs a scan of
        the waiting and scheduled jobs, which runs in a thread, one at a time, and whose misses
        are remembered a moment. A job known only by its snapshot (expired, or its result not
        kept) is shown as the snapshot tells it.
        """
        found: Job[Any] | JobInfo | None = self._seen.get(job_id) or _inspect.find_held(bg, job_id)
        if found is None:
            found = bg.results.find(job_id)
        if found is None:
            found = await self._finder.find(bg, job_id)
        if found is None:
            return None
        if isinstance(found, JobInfo):
            return {"now": time.time(), "job": self.present.info(found)}
        job = found
        self._remember([job])
        return {
            "now": time.time(),
            "job": self.present.job(
                job,
                in_failures=_in_failures(bg, job),
                detail=True,
                journaled=bg.journal_config is not None,
            ),
        }

    def row(self, row: JobRow) -> dict[str, Any] | None:
        """Another process's job, from its row in the journal; None if it cannot be shown."""
        job = rebuild(row)
        if job is None:
            return None
        shown = self.present.job(
            job, in_failures=row.state in ("failed", "dead"), detail=True, journaled=True
        )
        shown["can_cancel"] = row.finished_at is None  # (a request its process picks up)
        return {"now": time.time(), "job": {**shown, "process": row.pid, "elsewhere": True}}

    def rows(self, rows: list[JobRow]) -> list[dict[str, Any]]:
        """Other processes' jobs for a listing (those this process cannot show left out)."""
        shown = []
        for row in rows:
            job = rebuild(row)
            if job is not None:
                data = self.present.job(job, in_failures=True, journaled=True)
                shown.append({**data, "process": row.pid})
        return shown

    def _listing(
        self,
        bg: Backburner,
        jobs: list[Job[Any]],
        total: int,
        offset: int,
        limit: int,
        queue: str | None,
        complete: bool = True,
    ) -> dict[str, Any]:
        self._remember(jobs)
        journaled = bg.journal_config is not None
        return {
            "now": time.time(),
            "jobs": [
                self.present.job(job, in_failures=_in_failures(bg, job), journaled=journaled)
                for job in jobs
            ],
            "total": total,
            "offset": offset,
            "limit": limit,
            "pages": max(1, math.ceil(total / limit)),
            "queue": queue,
            # False: the listing stopped at its bound on work and may miss some jobs.
            "complete": complete,
        }

    def _remember(self, jobs: list[Job[Any]]) -> None:
        seen = self._seen
        for job in jobs:
            seen[job.id] = job
            seen.move_to_end(job.id)
        while len(seen) > _SEEN:
            seen.popitem(last=False)

    # Actions.

    def act(self, bg: Backburner, action: str, fields: dict[str, str]) -> str:
        """Do ``action``; return what was done, in words. Raises ``ActionError``."""
        try:
            return self._act(bg, action, fields)
        except ValueError as exc:
            # Every ValueError these calls raise names something that is not there.
            raise ActionError(404, str(exc)) from None
        except BackburnerError as exc:
            raise ActionError(409, str(exc)) from None

    def _retry_all(self, bg: Backburner) -> str:
        jobs = bg.failures()
        sent = 0
        for job in jobs:
            try:
                bg.retry(job)
            except ValueError:
                continue  # retried or discarded meanwhile (another tab): not ours to count
            except BackburnerError as exc:
                raise ActionError(
                    409,
                    f"{sent} of {len(jobs)} jobs sent to their queues again, then job {job.id} "
                    f"could not be: {str(exc).rstrip('.')}. It and the rest are still in the "
                    "dead list.",
                ) from None
            sent += 1
        return f"{sent} jobs sent to their queues again."

    def _act(self, bg: Backburner, action: str, fields: dict[str, str]) -> str:
        if action in ("pause", "resume"):
            queue = fields["queue"]
            if action == "pause":
                bg.pause(queue)
                return f"Queue {queue} paused."
            bg.resume(queue)
            return f"Queue {queue} resumed."
        if action == "retry":
            job = bg.retry(fields["job"])
            self._remember([job])
            return f"Job {job.id} sent to queue {job.queue} again."
        if action == "discard":
            if not bg.discard(fields["job"]):
                raise ActionError(404, f"job {fields['job']} is not in the dead list")
            return f"Job {fields['job']} discarded."
        if action == "retry-all":
            return self._retry_all(bg)
        if action == "discard-all":
            return f"{bg.discard_all()} jobs discarded."
        if action == "trigger":
            started = bg.trigger(fields["name"])
            if started is None:
                return f"Periodic job {fields['name']} is still running: not started again."
            self._remember([started])
            return f"Periodic job {fields['name']} started as job {started.id}."
        if action == "cancel":
            found = bg.find_job(fields["job"])
            if found is None:
                raise ActionError(404, f"no job {fields['job']} is pending, scheduled or running")
            if not found.cancel():
                raise ActionError(
                    409, f"job {found.id} could not be cancelled ({found.status.value})"
                )
            return f"Job {found.id} cancelled."
        raise ActionError(404, f"no action named {action!r}")


class _Finder:
    """Looks up ids nobody showed lately: one scan at a time, off the loop, misses cached.

    Many tabs on the page of a job that is gone share one scan per ``_MISS_TTL`` seconds
    instead of each costing O(waiting + scheduled jobs) on the event loop at every poll.
    """

    def __init__(self) -> None:
        self._misses: OrderedDict[str, float] = OrderedDict()  # id -> when it was not found
        self._limiter = anyio.CapacityLimiter(1)

    async def find(self, bg: Backburner, job_id: str) -> Job[Any] | None:
        if self._missed(job_id):
            return None
        async with self._limiter:
            if self._missed(job_id):  # another request scanned for it meanwhile
                return None
            job = await anyio.to_thread.run_sync(_inspect.find_waiting, bg, job_id)
        if job is None:
            self._misses[job_id] = time.monotonic()
            self._misses.move_to_end(job_id)
            while len(self._misses) > _MISSES:
                self._misses.popitem(last=False)
        return job

    def _missed(self, job_id: str) -> bool:
        when = self._misses.get(job_id)
        if when is None:
            return False
        if time.monotonic() - when < _MISS_TTL:
            return True
        del self._misses[job_id]
        return False


def _queue(counters: dict[str, Any]) -> dict[str, Any]:
    # `name` stays whole (the pause and resume forms send it back); `label` is for showing.
    name = printable(str(counters["name"]))
    return {**counters, "name": name, "label": truncate(name, 200)}


def _yielding(stats: YieldStats) -> dict[str, Any]:
    # One line the page shows (and its script refreshes), and the figures for the API.
    latency = "" if stats.latency is None else f", requests {stats.latency * 1000:.0f} ms"
    allowed = stats.effective_workers.items()
    queues = ", ".join(f"{truncate(printable(name), 60)} {count}" for name, count in allowed)
    summary = (
        f"{stats.state}: pressure {stats.pressure:.2f} times the target (loop lag "
        f"{stats.lag * 1000:.0f} ms{latency}); workers allowed now: {queues or 'none open'}"
    )
    return {**asdict(stats), "summary": summary}


def _in_failures(bg: Backburner, job: Job[Any]) -> bool:
    return (
        job.status in (JobStatus.FAILED, JobStatus.DEAD)
        and bg.find_job(job.id, waiting=False) is job
    )
