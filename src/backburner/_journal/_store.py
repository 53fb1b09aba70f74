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

from .._errors import BackburnerError, DuplicateJob, JournalError
from .._errortext import error_line
from .._job import Job, JobHooks, describe_callable, traceparent_of
from .._jsonargs import check_json_arguments
from .._options import JobOptions, options_of
from .._registry import name_of
from .._status import JobStatus
from ._writer import Journal

__all__ = ["DurableHooks", "ElsewhereHooks", "JournalStore", "check_arguments", "unregistered"]

logger = logging.getLogger("backburner")

_CANCELLED, _ABANDONED = JobStatus.CANCELLED, JobStatus.ABANDONED
_SENT, _SUCCEEDED, _FAILED = JobStatus.SENT, JobStatus.SUCCEEDED, JobStatus.FAILED
_ENDS = {status.value: status for status in JobStatus if status.finished}
#: Seconds between two looks at the row of a job another process runs, while it is awaited.
_ELSEWHERE_POLL = 0.25
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

    __slots__ = ("journal", "max_result_bytes")

    # Every attempt is reported (its start committed first): such jobs take the guarded path.
    guarded = True

    def __init__(self, journal: Journal, max_result_bytes: int = 65536) -> None:
        self.journal = journal
        #: A result whose JSON is longer is not kept in the journal (nor is one not JSON).
        self.max_result_bytes = max_result_bytes

    def began(self, job: Job[Any]) -> asyncio.Future[None] | None:
        """The attempt's start, on its way to disk: the job runs once it is committed."""
        return self.journal.started(job.id, job.attempt)

    def will_retry(self, job: Job[Any]) -> None:
        """Its next attempt's time, and the error of this one."""
        assert job.run_at is not None
        self.journal.retrying(job.id, job.run_at, job.attempt, _error_text(job.exception()))

    def reopened(self, job: Job[Any]) -> None:
        """Retried by hand: unfinished again, if the journal still has it failed or dead.

        Another process sharing the journal may have retried or discarded it meanwhile (a
        dashboard on another worker): then ``ValueError``, as for a job not in the dead list;
        or a job of another process may hold its unique key: ``DuplicateJob``.
        """
        refused = self.journal.reopened(job.id)
        if refused is None:
            return
        state, holder = refused
        if state in ("failed", "dead") and holder is not None and job.unique_key is not None:
            raise DuplicateJob(job.unique_key, holder)
        raise ValueError(
            f"job {job.id} is no longer failed or dead in the journal {self.journal.path} "
            f"({state}): another process retried or discarded it meanwhile"
        )

    def finished(self, job: Job[Any], status: JobStatus, exc: BaseException | None) -> None:
        """Its end, unless shutdown cut it short (then it stays unfinished, for the next start)."""
        journal = self.journal
        if (status is _CANCELLED or status is _ABANDONED) and journal.keeping:
            return
        result = None
        if status is _SUCCEEDED and job.options.keep_result:
            result = _result_json(job, self.max_result_bytes)
        journal.finished(
            job.id, status.value, _error_text(exc), job.attempt, result, job.started_at
        )


class ElsewhereHooks(JobHooks):
    """The handle of a job another process sharing the journal holds (its unique key's holder).

    Its status here is ``sent``: this process's part is over. ``await job`` waits until the
    journal says it has ended, and takes its end from there (its result stays in the process
    that ran it unless it was plain JSON; a failure is a ``BackburnerError`` with its error
    text).
    """

    __slots__ = ("journal",)

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def handle(self, job: Job[Any], holder_id: str) -> Job[Any]:
        """A handle on ``holder_id``, the job of another process holding ``job``'s key."""
        held: Job[Any] = Job(
            job.spec, job.args, job.kwargs, None, job.unique_key, hooks=self, job_id=holder_id
        )
        held.finish(_SENT)
        return held

    async def settle(self, job: Job[Any]) -> None:
        """Wait for the job's end in the journal."""
        while job.status is _SENT:
            rows = await self.journal.aread(
                "SELECT state, error, attempt, finished_at, result FROM jobs WHERE id = ?",
                (job.id,),
            )
            if rows and rows[0][3] is None:
                await asyncio.sleep(_ELSEWHERE_POLL)
                continue
            if job.status is not _SENT:
                return  # another waiter got there first
            if not rows:  # taken back (its queue was full), or pruned long after its end
                job.finish(_CANCELLED)
                return
            state, error, attempt, _, result = rows[0]
            job.attempt = attempt
            status = _ENDS.get(state, _FAILED)  # (invalid: it could not run)
            if status is _SUCCEEDED:
                job.finish(status, None if result is None else json.loads(result))
            elif status is _CANCELLED or status is _ABANDONED:
                job.finish(status)
            else:
                failure = BackburnerError(f"job {job.id} failed in another process: {error}")
                job.finish(status, exc=failure)

    def where(self) -> str:
        """Where the job runs."""
        return f"another process sharing the journal {self.journal.path}"


class JournalStore:
    """The ``JobStore`` of a journaled executor: a job is committed before it is queued.

    In that order a job never runs before it is on disk, every later record of it (started,
    finished) follows its row, and a write that fails leaves nothing in the queue.
    """

    def __init__(self, journal: Journal, max_result_bytes: int = 65536) -> None:
        self.journal = journal
        self.hooks = DurableHooks(journal, max_result_bytes)
        self.elsewhere = ElsewhereHooks(journal)

    def check(self, job: Job[Any], run_at: float | None) -> tuple[Any, ...]:
        """The job's row; ``TypeError`` if it is not a registered function with JSON arguments."""
        return _row(job, run_at)

    def accept(self, job: Job[Any], record: object) -> Job[Any] | None:
        """Insert the row and wait (this thread) until it is committed; if another process's
        job holds its unique key, nothing is written and a handle on that job is returned."""
        assert isinstance(record, tuple)
        holder: list[tuple[str]] = []
        self.journal.wait(self.journal.insert(record, holder))
        return self.elsewhere.handle(job, holder[0][0]) if holder else None

    async def aaccept(self, job: Job[Any], record: object) -> Job[Any] | None:
        """Insert the row and wait (this task) until it is committed (see ``accept``)."""
        assert isinstance(record, tuple)
        holder: list[tuple[str]] = []
        await self.journal.ainsert(record, holder)
        return self.elsewhere.handle(job, holder[0][0]) if holder else None

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
    row = (job.id, name, job.queue, _encode(payload), run_at, job.unique_key, job.enqueued_at)
    return (*row, traceparent_of(job))


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


def _result_json(job: Job[Any], limit: int) -> str | None:
    """The job's return value as JSON, for ``lookup`` from other processes; None if it is not
    plain JSON or is longer than ``limit`` (it is then known only in its own process)."""
    try:
        text = _encode(job.result())
    except (TypeError, ValueError):
        return None
    return text if len(text) <= limit else None


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = error_line(exc, _ERROR_TEXT_LIMIT)[:_ERROR_TEXT_LIMIT]
    # A lone surrogate (a file name in the message) has no UTF-8: written as it is, it failed
    # the whole batch of journal writes it was in, other jobs' with it.
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()
