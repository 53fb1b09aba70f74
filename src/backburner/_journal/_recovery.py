"""Opening a journal for an executor: its claimed jobs rebuilt and queued, its ticks gated.

The journal's writer thread calls ``_Recoverer``: it measures the room in the executor's
queues and turns claimed rows back into ``DurableJob``s, looking each stored name up in the
registry (an unknown name is never imported: the row is marked invalid). ``_TickGate`` lets
periodic ticks through the journal, once per tick across processes and restarts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .._admission import Admission
from .._callables import CallPlan, plan_call
from .._clock import Clock
from .._errors import BackburnerError, QueueFull
from .._find import timed_entries
from .._job import Job, describe_callable
from .._periodic import Claim, Periodic
from .._ports import Queue
from .._registry import lookup, name_of
from .._results import KeptResults
from .._scheduler import Scheduler
from .._status import JobStatus
from ._lookup import JournalLookup
from ._store import DurableHooks, JournalStore, check_arguments, unregistered
from ._writer import ClaimedRow, Journal, JournalConfig

__all__ = ["OpenJournal", "open_journal"]

logger = logging.getLogger("backburner")

_SCHEDULED, _RETRYING = JobStatus.SCHEDULED, JobStatus.RETRYING
_MISSED_TICKS_SCANNED = 10_000


class OpenJournal(NamedTuple):
    """A journal opened for an executor: the file's writer, the store, the periodic gate."""

    journal: Journal
    store: JournalStore
    gate: TickGate
    #: Where ``lookup`` asks for a job this process does not hold (another's).
    lookup: JournalLookup


async def open_journal(
    config: JournalConfig,
    *,
    queues: Mapping[str, Queue],
    admission: Admission,
    scheduler: Scheduler,
    schedule_room: Callable[[], int],
    periodic: Iterable[Periodic],
    results: KeptResults,
) -> OpenJournal:
    """Open the journal at ``config``; its unfinished jobs go back into ``queues`` first.

    ``schedule_room()`` is how many more jobs may wait for their time. Every job is admitted
    through ``admission`` (its row already written: ``stored``). ``results``: how long finished
    jobs are kept and how large a result may be, as the journal keeps them for ``lookup``.
    """
    for spec in periodic:
        _check_periodic(spec)
    recoverer = _Recoverer(queues, admission, scheduler, schedule_room)
    journal = Journal(config, recoverer)
    store = recoverer.store = JournalStore(journal, results.max_bytes)
    await journal.open()
    return OpenJournal(journal, store, TickGate(journal), JournalLookup(journal, results.ttl))


def _check_periodic(spec: Periodic) -> None:
    label = describe_callable(spec.fn)
    if name_of(spec.fn) is None or "<" in label:
        raise TypeError(f"periodic job {spec.label!r}: {unregistered(spec.fn, label)}")
    check_arguments(label, spec.args, dict(spec.kwargs))


class TickGate:
    """Periodic ticks through the journal: each fired once, by one process, even across restarts."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def claim(self, name: str, tick: float) -> Claim:
        """Whether this process fires the tick (the first to move it up in the journal)."""
        # Blocks the loop for one commit, once per tick: ticks are rare, and a tick's job
        # must not be enqueued by two processes.
        return Claim(*self.journal.claim_tick(name, tick))

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


class _Recoverer:
    """Hands jobs claimed from the journal to the executor's queues (from the writer thread)."""

    store: JournalStore  # set once the journal exists

    def __init__(
        self,
        queues: Mapping[str, Queue],
        admission: Admission,
        scheduler: Scheduler,
        schedule_room: Callable[[], int],
    ) -> None:
        self.queues = queues
        self.admission = admission
        self.scheduler = scheduler  # (its jobs waiting for their time, for cancel requests)
        self.clock: Clock = scheduler.clock
        self.schedule_room = schedule_room
        # Each running job's last progress written: (its report's time, when written).
        self._progress_written: dict[str, tuple[float, float]] = {}

    def room(self) -> tuple[dict[str, int], int]:
        due = {}
        for name, queue in self.queues.items():
            stats = queue.stats()
            due[name] = max(0, queue.max_pending + stats.idle - stats.pending)
        return due, max(0, self.schedule_room())

    def clock_now(self) -> float:
        return self.clock.now()

    def progress_reports(self) -> list[tuple[str, str]]:
        # On the writer's thread: a report is one tuple read whole (see Progress), and the
        # running jobs are a copy. The job never waits for this, nor does the loop.
        now = time.time()
        reports: list[tuple[str, str]] = []
        written = self._progress_written
        running = set()
        for queue in self.queues.values():
            for job in queue.running_jobs():
                progress = job.progress
                if progress is None:
                    continue
                running.add(job.id)
                last = written.get(job.id)
                if last is not None and (last[0] == progress.updated_at or now - last[1] < 1.0):
                    continue  # unchanged, or written less than a second ago
                written[job.id] = (progress.updated_at, now)
                report = [progress.done, progress.total, progress.message, progress.updated_at]
                reports.append((json.dumps([*report, progress.rate]), job.id))
        for gone in written.keys() - running:
            del written[gone]
        return reports

    def cancel(self, job_ids: set[str]) -> None:
        jobs = [job for _, job in timed_entries(self.scheduler)]  # delayed and retrying ones
        for queue in self.queues.values():
            jobs += [*queue.running_jobs(), *queue.waiting_jobs()]
        for job in jobs:
            if job.id in job_ids:
                job.cancel()  # (any thread)

    def snapshot(self) -> str:
        queues = {}
        for name, queue in self.queues.items():
            stats = queue.stats()  # (any thread: a few counters read under the GIL)
            queues[name] = {
                "workers": stats.workers,
                "busy": stats.busy,
                "pending": stats.pending,
                "scheduled": stats.scheduled,
                "processed": stats.processed,
                "failed": stats.failed,
            }
        return json.dumps({"pid": os.getpid(), "queues": queues}, separators=(",", ":"))

    def deliver(self, rows: Sequence[ClaimedRow]) -> tuple[list[tuple[str, str]], list[str]]:
        hooks = self.store.hooks
        now = self.clock.now()
        functions: dict[str, CallPlan] = {}  # (the plan of each function met, by its name)
        invalid: list[tuple[str, str]] = []
        unplaced: list[str] = []
        delayed = 0
        queues = self.queues
        decoded = _decode_all([row.payload for row in rows])
        for row, payload in zip(rows, decoded, strict=True):
            # The common row, rebuilt inline (a restart may rebuild 100,000): a function met
            # before, a known queue, positional arguments only, no unique key.
            known = functions.get(row.name)
            queue = queues.get(row.queue)
            args = payload.get("args") if type(payload) is dict and len(payload) == 1 else None
            try:
                if (
                    known is None
                    or queue is None
                    or row.unique_key is not None
                    or type(args) is not list
                ):
                    job, queue = self._rebuild(row, payload, hooks, functions)
                else:
                    spec = known.spec_in(queue.name)  # (its plan's own, on its declared queue)
                    job = Job(spec, tuple(args), None, queue, hooks=hooks, job_id=row.id)
                    job.attempt = row.attempt
                if row.trace is not None:  # its attempts here link to its enqueue span
                    job.trace = (row.trace, None, False)
                due = row.run_at if row.run_at is not None and row.run_at > now else None
                status = _RETRYING if row.attempt else _SCHEDULED
                admitted = self.admission.admit(job, queue, due, stored=True, status=status)
                if admitted is not job:
                    raise ValueError(f"job {admitted.id} holds its unique key {row.unique_key!r}")
            except QueueFull:
                unplaced.append(row.id)
                continue
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
            delayed += due is not None
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
        hooks: DurableHooks,
        functions: dict[str, CallPlan],
    ) -> tuple[Job[Any], Queue]:
        plan = functions.get(row.name)
        if plan is None:
            entry = lookup(row.name)
            if entry is None:
                raise ValueError(
                    f"no function is registered as {row.name!r} in this process (it was never "
                    f"imported, renamed, or removed); stored names are never imported or run"
                )
            plan = functions[row.name] = plan_call(entry.fn)
        options = plan.spec.options
        queue = self.queues.get(row.queue)
        if queue is None:
            raise ValueError(
                f"this executor has no queue {row.queue!r} (it has {sorted(self.queues)})"
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
        spec = plan.spec_in(queue.name, options)
        job: Job[Any] = Job(spec, tuple(args), kwargs, queue, row.unique_key, hooks, row.id)
        job.attempt = row.attempt
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
