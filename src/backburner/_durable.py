"""Journaled jobs: what an executor with ``journal=`` does at enqueue, at a job's end, at startup.

A journaled job is a ``DurableJob``: a ``Job`` that reports its attempts and its end to the
journal. At enqueue its function must be registered by name (``@job``) and its arguments must
be plain JSON; anything else is a ``TypeError`` there, not a surprise at recovery. The row is
queued for the writer *before* the job reaches its queue, so every later record of the job
(started, finished) comes after it; then the caller waits for the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._callables import plan_call
from ._errors import BackburnerError, JournalError, QueueFull
from ._job import Job, JobOwner, describe_callable
from ._journal import ClaimedRow, Journal, JournalConfig
from ._options import JobOptions, options_of
from ._periodic import Periodic
from ._registry import lookup, name_of
from ._status import JobStatus

if TYPE_CHECKING:
    from ._executor import Backburner
    from ._queue import JobQueue

__all__ = ["DurableJob", "asubmit", "check_arguments", "open_journal", "submit"]

logger = logging.getLogger("backburner")

T = TypeVar("T")

_CANCELLED, _ABANDONED = JobStatus.CANCELLED, JobStatus.ABANDONED
_SCHEDULED, _RETRYING = JobStatus.SCHEDULED, JobStatus.RETRYING
_SCALARS = frozenset({str, int, bool, type(None)})
_FIELDS = tuple(field.name for field in dataclasses.fields(JobOptions))
# Options that are plain values, so a journal can store a per-call change to them.
_STORABLE = frozenset(
    {"queue", "retries", "backoff", "backoff_max", "jitter", "timeout", "on_duplicate"}
)
_ERROR_TEXT_LIMIT = 2000
_MISSED_TICKS_SCANNED = 10_000
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

    def _began(self) -> None:
        self._journal.started(self.id, self.attempt)

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


async def open_journal(executor: Backburner, config: JournalConfig) -> Journal:
    """Open the journal for ``executor``; its unfinished jobs go back into the queues."""
    for runner in executor._periodic.values():
        _check_periodic(runner.spec)
    journal = Journal(config, _Recoverer(executor))
    executor._job_class = job_class_for(journal)
    await journal.open()
    executor._tick_gate = _TickGate(journal)
    return journal


def _check_periodic(spec: Periodic) -> None:
    label = describe_callable(spec.fn)
    if name_of(spec.fn) is None or "<" in label:
        raise TypeError(f"periodic job {spec.label!r}: {_unregistered(spec.fn, label)}")
    check_arguments(label, spec.args, dict(spec.kwargs))


class _TickGate:
    """Periodic ticks through the journal: each fired once, by one process, even across restarts."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def claim(self, name: str, tick: float) -> bool:
        # Blocks the loop for one commit, once per tick: ticks are rare, and a tick's job
        # must not be enqueued by two processes.
        return self.journal.claim_tick(name, tick)

    def missed(self, spec: Periodic, now: float) -> float | None:
        last = self.journal.periodic_last_run.get(spec.label)
        if last is None:
            return None  # never ran: the schedule starts now
        tick = spec.next_after(last)
        if tick > now:
            return None
        for _ in range(_MISSED_TICKS_SCANNED):  # the latest missed tick, for the log
            following = spec.next_after(tick)
            if following > now:
                break
            tick = following
        return tick


# Enqueue.


def submit(
    executor: Backburner, journal: Journal, job: Job[Any], queue: JobQueue, run_at: float | None
) -> Job[Any]:
    """``enqueue`` for a journaled executor: returns once the job is committed."""
    row = _row(job, run_at)
    if job.unique_key is not None and (holder := executor._unique.claim(job)) is not None:
        return holder
    batch = journal.insert(row)
    try:
        if run_at is None:
            queue.submit(job)
        else:
            executor._check_schedule_room()
            queue.submit_at(job, run_at, _SCHEDULED)
    except BaseException:
        executor._unique.release(job)
        journal.delete(row[0])
        raise
    try:
        journal.wait(batch)
    except JournalError:
        job.cancel()
        raise
    return job


async def asubmit(
    executor: Backburner, journal: Journal, job: Job[Any], queue: JobQueue
) -> Job[Any]:
    """``aenqueue`` for a journaled executor: waits for room, then for the commit, suspended."""
    row = _row(job, None)
    if job.unique_key is not None and (holder := executor._unique.claim(job)) is not None:
        return holder
    batch = journal.insert(row)
    try:
        if executor.loop is asyncio.get_running_loop():
            await executor._submit_when_room(job, queue)
        else:
            assert executor.loop is not None
            waiting = executor._submit_when_room(job, queue)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(waiting, executor.loop))
    except BaseException:
        executor._unique.release(job)
        journal.delete(row[0])
        raise
    try:
        await journal.await_batch(batch)
    except JournalError:
        job.cancel()
        raise
    return job


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
    for index, value in enumerate(args):
        problem = _json_problem(value)
        if problem is not None:
            raise TypeError(_argument_message(label, f"argument {index + 1}", problem))
    for key, value in (kwargs or {}).items():
        problem = _json_problem(value)
        if problem is not None:
            raise TypeError(_argument_message(label, f"keyword argument {key!r}", problem))


def _argument_message(label: str, where: str, problem: str) -> str:
    return (
        f"{where} of journaled job {label} is {problem}. A journal stores arguments as JSON: "
        f"str, int, float (finite), bool, None, and lists and dicts with str keys of those. "
        f"Pass plain data instead (an id to look the object up by, a dict of its fields)"
    )


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` would not come back from JSON as it went in, or None."""
    kind = type(value)
    if kind in _SCALARS:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"the float {value!r} (JSON has no such number)"
    if depth > 100:
        return "nested too deeply"
    if kind is list:
        for index, item in enumerate(value):
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return f"a list whose item {index} is {problem}"
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"a dict with the {type(key).__name__} key {key!r} (JSON keys are str)"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return f"a dict whose item {key!r} is {problem}"
        return None
    if kind is tuple:
        return f"a tuple {_short(value)} (it would come back a list: pass a list)"
    return f"a {kind.__name__} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


# Recovery: the journal's writer thread calls these.


class _Recoverer:
    """Hands jobs claimed from the journal to the executor's queues (from the writer thread)."""

    def __init__(self, executor: Backburner) -> None:
        self.executor = executor

    def room(self) -> tuple[dict[str, int], int]:
        executor = self.executor
        due = {}
        for name, queue in executor._queues.items():
            stats = queue.stats()
            due[name] = max(0, queue.max_pending + stats.idle - stats.pending)
        scheduler = executor.scheduler
        waiting = len(scheduler) if scheduler is not None else 0
        return due, max(0, executor.max_scheduled - waiting)

    def clock_now(self) -> float:
        return self.executor.clock.now()

    def deliver(self, rows: Sequence[ClaimedRow]) -> tuple[list[tuple[str, str]], list[str]]:
        executor = self.executor
        job_class = executor._job_class
        now = executor.clock.now()
        functions: dict[str, tuple[Callable[..., Any], JobOptions, bool]] = {}
        invalid: list[tuple[str, str]] = []
        unplaced: list[str] = []
        delayed = 0
        decoded = _decode_all([row.payload for row in rows])
        for row, payload in zip(rows, decoded, strict=True):
            try:
                job, queue = self._rebuild(row, payload, job_class, functions)
            except (TypeError, ValueError, BackburnerError) as exc:
                invalid.append((row.id, str(exc)))
                logger.error(
                    "job %s (%s) in the journal is invalid and will not run: %s",
                    row.id,
                    row.name,
                    exc,
                    extra={"backburner_job_id": row.id, "backburner_job_name": row.name},
                )
                continue
            try:
                if row.run_at is not None and row.run_at > now:
                    queue.submit_at(job, row.run_at, _RETRYING if row.attempt else _SCHEDULED)
                    delayed += 1
                else:
                    queue.submit(job)
            except QueueFull:
                executor._unique.release(job)
                unplaced.append(row.id)
        taken = len(rows) - len(invalid) - len(unplaced)
        if taken:
            logger.info(
                "took %d unfinished jobs from the journal (%d of them delayed)", taken, delayed
            )
        return invalid, unplaced

    def _rebuild(
        self,
        row: ClaimedRow,
        payload: Any,
        job_class: Callable[..., Job[Any]],
        functions: dict[str, tuple[Callable[..., Any], JobOptions, bool]],
    ) -> tuple[Job[Any], JobQueue]:
        known = functions.get(row.name)
        if known is None:
            entry = lookup(row.name)
            if entry is None:
                raise ValueError(
                    f"no function is registered as {row.name!r} in this process (it was never "
                    f"imported, renamed, or removed); stored names are never imported or run"
                )
            known = functions[row.name] = (
                entry.fn,
                options_of(entry.fn),
                plan_call(entry.fn).is_async,
            )
        fn, options, is_async = known
        queue = self.executor._queues.get(row.queue)
        if queue is None:
            raise ValueError(
                f"this executor has no queue {row.queue!r} (it has {sorted(self.executor._queues)})"
            )
        if isinstance(payload, Exception):
            raise ValueError(f"its stored arguments cannot be read: {payload}")
        args = payload.get("args") if type(payload) is dict else None
        kwargs = payload.get("kwargs") if type(payload) is dict else None
        if type(args) is not list or not (kwargs is None or type(kwargs) is dict):
            raise ValueError(f"its stored arguments have the wrong shape: {row.payload[:80]!r}")
        changes = payload.get("options")
        if changes:
            options = options.replace(**changes)
        job = job_class(
            fn, tuple(args), kwargs, queue.name, is_async, queue, options, row.unique_key
        )
        assert isinstance(job, DurableJob)
        job._stored_id = row.id
        job.attempt = row.attempt
        if row.unique_key is not None:
            holder = self.executor._unique.claim(job)
            if holder is not None:
                raise ValueError(f"job {holder.id} holds its unique key {row.unique_key!r}")
        return job, queue


def _decode_all(payloads: list[str]) -> list[Any]:
    """Parse every payload; a payload that does not parse becomes its exception."""
    try:
        # One parse for all (a restart may read 100,000): several times faster than one each.
        decoded = json.loads("[" + ",".join(payloads) + "]")
        if isinstance(decoded, list) and len(decoded) == len(payloads):
            return decoded
    except ValueError:
        pass
    results: list[Any] = []
    for text in payloads:
        try:
            results.append(json.loads(text))
        except ValueError as exc:
            results.append(exc)
    return results
