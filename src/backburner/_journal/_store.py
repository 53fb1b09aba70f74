"""Journaled jobs: what an executor with ``journal=`` does at enqueue and as its jobs run.

A journaled job holds ``DurableHooks``: it reports its attempts and its end to the journal.
At enqueue (``JournalStore``, the executor's ``JobStore``) its function must be registered by
name (``@job``) and its arguments must be plain JSON; anything else is a ``TypeError`` there,
not a surprise at recovery. The caller waits for the job's row to be committed, then the job
goes to its queue: it never runs before it is on disk, and every later record of it (started,
finished) follows its row. Opening a journal and rebuilding its jobs is ``_recovery.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from .._errors import JournalError
from .._job import Job, JobHooks, describe_callable
from .._jsonargs import check_json_arguments
from .._options import JobOptions, options_of
from .._registry import name_of
from .._status import JobStatus
from ._writer import Journal

__all__ = ["DurableHooks", "JournalStore", "check_arguments", "unregistered"]

logger = logging.getLogger("backburner")

_CANCELLED, _ABANDONED = JobStatus.CANCELLED, JobStatus.ABANDONED
_FIELDS = tuple(field.name for field in dataclasses.fields(JobOptions) if field.init)
# Options that are plain values, so a journal can store a per-call change to them.
_STORABLE = frozenset(
    {
        "queue",
        "retries",
        "backoff",
        "backoff_max",
        "jitter",
        "timeout",
        "on_duplicate",
        "keep_result",
        "meta",
    }
)
_ERROR_TEXT_LIMIT = 2000
# The arguments were checked to be plain JSON already; this only writes them (compactly).
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


class DurableHooks(JobHooks):
    """What a journaled job adds: its attempts and its end are written to the journal."""

    __slots__ = ("journal",)

    # Every attempt is reported (its start committed first): such jobs take the guarded path.
    guarded = True

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def began(self, job: Job[Any]) -> asyncio.Future[None] | None:
        """The attempt's start, on its way to disk: the job runs once it is committed."""
        return self.journal.started(job.id, job.attempt)

    def will_retry(self, job: Job[Any]) -> None:
        """Its next attempt's time, and the error of this one."""
        assert job.run_at is not None
        self.journal.retrying(job.id, job.run_at, job.attempt, _error_text(job.exception()))

    def reopened(self, job: Job[Any]) -> None:
        """Retried by hand: unfinished again."""
        self.journal.reopened(job.id)

    def finished(self, job: Job[Any], status: JobStatus, exc: BaseException | None) -> None:
        """Its end, unless shutdown cut it short (then it stays unfinished, for the next start)."""
        journal = self.journal
        if (status is _CANCELLED or status is _ABANDONED) and journal.keeping:
            return
        journal.finished(job.id, status.value, _error_text(exc), job.attempt)


class JournalStore:
    """The ``JobStore`` of a journaled executor: a job is committed before it is queued.

    In that order a job never runs before it is on disk, every later record of it (started,
    finished) follows its row, and a write that fails leaves nothing in the queue.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.hooks = DurableHooks(journal)

    def check(self, job: Job[Any], run_at: float | None) -> tuple[Any, ...]:
        """The job's row; ``TypeError`` if it is not a registered function with JSON arguments."""
        return _row(job, run_at)

    def accept(self, record: object) -> None:
        """Insert the row and wait (this thread) until it is committed."""
        assert isinstance(record, tuple)
        self.journal.wait(self.journal.insert(record))

    async def aaccept(self, record: object) -> None:
        """Insert the row and wait (this task) until it is committed."""
        assert isinstance(record, tuple)
        await self.journal.await_batch(self.journal.insert(record))

    def retract(self, job: Job[Any], *, wait: bool) -> None:
        """Delete the row of a job whose enqueue raised after all (its queue was full, say)."""
        batch = self.journal.delete(job.id)
        if not wait:
            return
        try:
            self.journal.wait(batch)
        except JournalError as exc:
            logger.error(
                "job %s was refused but its row could not be deleted from the journal (%s): "
                "it may run after a restart",
                job.describe(),
                exc,
            )


def _row(job: Job[Any], run_at: float | None) -> tuple[Any, ...]:
    fn = job.fn
    name = name_of(fn)
    label = describe_callable(fn)
    if name is None or "<" in label:
        raise TypeError(unregistered(fn, label))
    check_arguments(label, job.args, job.kwargs)
    payload: dict[str, Any] = {"args": list(job.args)}
    if job.kwargs:
        payload["kwargs"] = job.kwargs
    changes = _option_changes(label, options_of(fn), job.options)
    if changes:
        payload["options"] = changes
    # A traced job's enqueue span (see Job.trace): its attempts after a restart link to it.
    trace = getattr(job, "trace", None)
    traceparent = None if trace is None else trace[0]
    row = (job.id, name, job.queue, _encode(payload), run_at, job.unique_key, job.enqueued_at)
    return (*row, traceparent)


def unregistered(fn: Callable[..., Any], label: str) -> str:
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
        changes[field] = dict(value) if field == "meta" else value  # (read-only: JSON wants a dict)
    return changes


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]
