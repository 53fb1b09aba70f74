"""Journaled jobs: what an executor with ``journal=`` does at enqueue, at a job's end, at startup.

A journaled job is a ``DurableJob``: a ``Job`` that reports its attempts and its end to the
journal. At enqueue its function must be registered by name (``@job``) and its arguments must
be plain JSON; anything else is a ``TypeError`` there, not a surprise at recovery. The caller
waits for the job's row to be committed, then the job goes to its queue: it never runs before
it is on disk, and every later record of it (started, finished) follows its row. Opening a journal
and rebuilding its jobs is ``_recovery.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._errors import JournalError
from ._job import Job, JobOwner, describe_callable
from ._journal import Journal
from ._jsonargs import check_json_arguments
from ._options import JobOptions, options_of
from ._registry import name_of
from ._status import JobStatus

if TYPE_CHECKING:
    from ._executor import Backburner
    from ._queue import JobQueue

__all__ = ["DurableJob", "asubmit", "check_arguments", "job_class_for", "submit"]

logger = logging.getLogger("backburner")

T = TypeVar("T")

_CANCELLED, _ABANDONED = JobStatus.CANCELLED, JobStatus.ABANDONED
_SCHEDULED = JobStatus.SCHEDULED
_FIELDS = tuple(field.name for field in dataclasses.fields(JobOptions))
# Options that are plain values, so a journal can store a per-call change to them.
_STORABLE = frozenset(
    {"queue", "retries", "backoff", "backoff_max", "jitter", "timeout", "on_duplicate"}
)
_ERROR_TEXT_LIMIT = 2000
# The arguments were checked to be plain JSON already; this only writes them (compactly).
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


class DurableJob(Job[T]):
    """A job of a journaled executor: its attempts and its end are written to the journal."""

    __slots__ = ("_stored_id",)
    #: Set on the subclass made for each journal (``job_class_for``).
    _journal: ClassVar[Journal]

    @property
    def id(self) -> str:
        """The job's id: kept across restarts, since the journal knows the job by it."""
        try:
            return self._stored_id
        except AttributeError:
            stored: str = Job.id.fget(self)  # type: ignore[attr-defined]
            self._stored_id: str = stored
            return stored

    def _began(self) -> asyncio.Future[None] | None:
        return self._journal.started(self.id, self.attempt)

    def _will_retry(self) -> None:
        assert self.run_at is not None
        self._journal.retrying(self.id, self.run_at, self.attempt, _error_text(self._exception))

    def _reopen(self, owner: JobOwner) -> None:
        Job._reopen(self, owner)
        self._journal.reopened(self.id)

    def _finish(
        self, status: JobStatus, result: Any = None, exc: BaseException | None = None
    ) -> None:
        Job._finish(self, status, result, exc)
        journal = self._journal
        if (status is _CANCELLED or status is _ABANDONED) and journal.keeping:
            return  # cut short by shutdown: it stays unfinished, for the next start
        journal.finished(self.id, status.value, _error_text(exc), self.attempt)


def job_class_for(journal: Journal) -> type[DurableJob[Any]]:
    """A ``DurableJob`` class bound to ``journal`` (one per executor, made at ``open()``)."""
    return type("DurableJob", (DurableJob,), {"__slots__": (), "_journal": journal})


# Enqueue.


def submit(
    executor: Backburner, journal: Journal, job: Job[Any], queue: JobQueue, run_at: float | None
) -> Job[Any]:
    """``enqueue`` for a journaled executor: the job is committed first, then queued.

    In that order a job never runs before it is on disk, every later record of it (started,
    finished) follows its row, and a write that fails leaves nothing in the queue.
    """
    row = _row(job, run_at)
    if job.unique_key is not None and (holder := executor._unique.claim(job)) is not None:
        return holder
    try:
        if run_at is not None:  # refused before anything is written, not written then deleted
            executor._check_schedule_room()
        journal.wait(journal.insert(row))
    except BaseException:
        executor._unique.release(job)
        raise
    try:
        if run_at is None:
            queue.submit(job)
        else:
            queue.submit_at(job, run_at, _SCHEDULED)
    except BaseException:
        executor._unique.release(job)
        _retract(journal, job, wait=True)
        raise
    return job


async def asubmit(
    executor: Backburner, journal: Journal, job: Job[Any], queue: JobQueue
) -> Job[Any]:
    """``aenqueue`` for a journaled executor: committed (suspended), then queued when room."""
    row = _row(job, None)
    if job.unique_key is not None and (holder := executor._unique.claim(job)) is not None:
        return holder
    try:
        await journal.await_batch(journal.insert(row))
    except JournalError:
        executor._unique.release(job)
        raise
    except BaseException:  # cancelled while its commit was on the way: take it back
        executor._unique.release(job)
        _retract(journal, job, wait=False)
        raise
    try:
        if executor.loop is asyncio.get_running_loop():
            await executor._submit_when_room(job, queue)
        else:
            assert executor.loop is not None
            waiting = executor._submit_when_room(job, queue)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(waiting, executor.loop))
    except BaseException:
        executor._unique.release(job)
        _retract(journal, job, wait=False)
        raise
    return job


def _retract(journal: Journal, job: Job[Any], *, wait: bool) -> None:
    """Delete the row of a job whose enqueue raised after all (its queue was full, say)."""
    batch = journal.delete(job.id)
    if not wait:
        return
    try:
        journal.wait(batch)
    except JournalError as exc:
        logger.error(
            "job %s was refused but its row could not be deleted from the journal (%s): it "
            "may run after a restart",
            job.describe(),
            exc,
        )


def _row(job: Job[Any], run_at: float | None) -> tuple[Any, ...]:
    fn = job.fn
    name = name_of(fn)
    label = describe_callable(fn)
    if name is None or "<" in label:
        raise TypeError(_unregistered(fn, label))
    check_arguments(label, job.args, job.kwargs)
    payload: dict[str, Any] = {"args": list(job.args)}
    if job.kwargs:
        payload["kwargs"] = job.kwargs
    changes = _option_changes(label, options_of(fn), job.options)
    if changes:
        payload["options"] = changes
    job_id = Job.id.fget(job)  # type: ignore[attr-defined]
    assert isinstance(job, DurableJob)
    job._stored_id = job_id
    return (job_id, name, job.queue, _encode(payload), run_at, job.unique_key, job.enqueued_at)


def _unregistered(fn: Callable[..., Any], label: str) -> str:
    if "<lambda>" in label:
        why = "it is a lambda"
    elif "<locals>" in label:
        why = "it is defined inside another function"
    else:
        why = "it is not registered"
    return (
        f"{label} cannot be a journaled job: {why}. A journal stores a job's function by its "
        f"registered name: define it at module level and decorate it with @job() (or "
        f"@job(name='...') for a name that survives renames), then enqueue it"
    )


def check_arguments(label: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:
    """Raise ``TypeError`` naming the first argument that is not plain JSON."""
    check_json_arguments(f"journaled job {label}", args, kwargs, "A journal stores")


def _option_changes(label: str, base: JobOptions, options: JobOptions) -> dict[str, Any]:
    if options is base:
        return {}
    changes = {}
    for field in _FIELDS:
        value = getattr(options, field)
        if value == getattr(base, field):
            continue
        if field not in _STORABLE:
            if field == "unique" and isinstance(value, str):
                continue  # its key is stored with the job
            raise TypeError(
                f"options({field}=...) cannot be given per call to journaled job {label}: it "
                f"is not plain data a journal can store. Set it with @job({field}=...) instead"
            )
        changes[field] = value
    return changes


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]
