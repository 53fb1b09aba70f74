"""Admission: the one way a job enters a queue, whoever sends it.

``enqueue``, ``aenqueue``, ``enqueue_in``/``enqueue_at``, a manual ``retry``, a periodic tick,
a job recovered from a journal and a job for a remote engine all come through here, so every
one of them gets the same sequence and the same undoing when a step refuses:

0. compute a limited job's keys (``keys_of``): a key function that fails raises
   here, at the call site;
1. claim the job's unique key (a live job holding it is returned, or ``DuplicateJob``; a
   debounced job still waiting takes the new arguments and waits again instead);
2. with a journal, write the job down and wait for the commit (durable mode);
3. hand the job to its queue: now (a limited job through its limits' gate: its queue's
   ``submit_limited``), or at its time through the scheduler;

and if step 2 or 3 raises, the key is freed and the written row taken back, so that a refused
job leaves nothing behind.

``Backburner.enqueue`` inlines this sequence where it has nothing to do: for a plain job (step
3 alone) and for a job whose one limit is a ``ConcurrencyLimit`` counted here (its key, then
step 3: the gate registers the job as it enters, so a full queue leaves nothing to undo).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._clock import Clock
from ._coordination import Coordination
from ._errors import DuplicateJob, JournalError
from ._hostlimits import HostBuckets
from ._job import Job
from ._limits import Limits, keys_of
from ._ports import JobStore, JobTracer, Queue
from ._scheduler import Scheduler
from ._status import JobStatus
from ._unique import UniqueKeys

__all__ = ["Admission"]

_SCHEDULED = JobStatus.SCHEDULED


class Admission:
    """Admits jobs to queues: unique keys, the job store (if any), the schedule's room."""

    def __init__(
        self, unique: UniqueKeys, check_schedule_room: Callable[[], None], clock: Clock
    ) -> None:
        """``check_schedule_room()`` raises ``QueueFull`` when no more jobs may wait for their
        time (``max_scheduled``); ``clock`` says when a debounced job is due."""
        self.unique = unique
        self.check_schedule_room = check_schedule_room
        self.clock = clock
        #: The journal of a durable executor, from ``open()`` to the end of ``aclose()``.
        self.store: JobStore | None = None
        #: With tracing on: the span around each admission (the enqueue's PRODUCER span).
        self.tracer: JobTracer | None = None
        #: The limits' gate that limited jobs pass on their way to a queue, from ``open()``.
        self.limits: Limits | None = None

    def open_limits(self, scheduler: Scheduler) -> None:
        """A new gate for the limits, each time the executor opens (nothing held carries over:
        shutdown reported every held job)."""
        self.limits = Limits(scheduler)

    def share_limits(self, box: Coordination | None) -> Coordination | None:
        """Count the host-scoped limits in ``box`` (the coordination directory), if any;
        returns ``box``."""
        if box is not None and self.limits is not None:
            self.limits.host = HostBuckets(box.directory, box.name, box.alive)
        return box

    def admit(
        self,
        job: Job[Any],
        queue: Queue,
        run_at: float | None = None,
        *,
        stored: bool = False,
        retry: bool = False,
        status: JobStatus = _SCHEDULED,
        traced: bool = False,
    ) -> Job[Any]:
        """Admit ``job`` to ``queue`` now (``run_at`` None) or at clock time ``run_at``.

        Returns the job, or the live job that holds its unique key. ``stored``: the job is
        already in the journal (recovered, or retried by hand): nothing is written. ``retry``:
        a job retried by hand never returns another job holding its key, it raises
        ``DuplicateJob``. ``status``: what a job with a ``run_at`` is until then (a recovered
        retry waits as ``retrying``). ``traced``: inside its enqueue span already. Any thread.
        """
        if self.tracer is not None and not traced:  # (untraced: one test, no extra call)
            with self.tracer.publishing(job, run_at, stored):
                return self.admit(
                    job, queue, run_at, stored=stored, retry=retry, status=status, traced=True
                )
        queue.check(job, run_at)  # what the queue (an engine) can never take: before anything
        options = job.options
        keys = None
        if options.limits:  # (`_limit_keys` inlined: every limited job comes here)
            for limit in options.limits:
                if limit.scope == "host":  # it needs the shared directory
                    assert self.limits is not None
                    self.limits.check_host(options.limits)
                    break
            keys = keys_of(job)
        if options.debounce is not None:
            run_at = self._debounced(job, run_at)
        store = None if stored else self.store
        record = None if store is None else store.check(job, run_at)
        if job.unique_key is not None and (holder := self.unique.claim(job)) is not None:
            if retry:
                raise DuplicateJob(job.unique_key, holder)
            if options.debounce is not None and run_at is not None:
                queue.push_back(holder, job.args, job.kwargs, run_at)
            return holder
        try:
            if run_at is not None:  # refused before anything is written, not written then deleted
                self.check_schedule_room()
            holder = None if store is None else store.accept(job, record)
        except BaseException:
            self.unique.release(job)
            raise
        if holder is not None:
            return self._held_elsewhere(job, holder, retry)
        try:
            if keys is not None:
                assert self.limits is not None
                self.limits.register(job, keys)  # what its limits count it under, till it ends
            if run_at is None:
                if options.limits:
                    queue.submit_limited(job)
                else:
                    queue.submit(job)
            else:
                queue.submit_at(job, run_at, status)
        except BaseException:
            self._take_back(job, store, wait=True)
            raise
        return job

    async def aadmit(
        self, job: Job[Any], queue: Queue, loop: asyncio.AbstractEventLoop, traced: bool = False
    ) -> Job[Any]:
        """Like ``admit`` now, for ``aenqueue``: wait for the commit and for room, not raise.

        ``loop`` is the queue's: from another loop (another thread), the wait for room runs
        there. A remote queue returns once its broker has the job.
        """
        if self.tracer is not None and not traced:
            with self.tracer.publishing(job, None, False):
                return await self.aadmit(job, queue, loop, traced=True)
        queue.check(job, None)
        if job.options.debounce is not None:  # it waits for its time: nothing to wait for
            return self.admit(job, queue, traced=True)
        keys = self._limit_keys(job) if job.options.limits else None
        store = self.store
        record = None if store is None else store.check(job, None)
        if job.unique_key is not None and (holder := self.unique.claim(job)) is not None:
            return holder
        try:
            holder = None if store is None else await store.aaccept(job, record)
        except JournalError:
            self.unique.release(job)
            raise
        except BaseException:  # cancelled while its commit was on the way: take it back
            self._take_back(job, store, wait=False)
            raise
        if holder is not None:
            return self._held_elsewhere(job, holder, False)
        try:
            if keys is not None:
                assert self.limits is not None
                self.limits.register(job, keys)
            if loop is asyncio.get_running_loop():
                await queue.asubmit(job)
            else:  # awaited on another event loop: the job waits for room on its queue's
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(queue.asubmit(job), loop)
                )
        except BaseException:
            self._take_back(job, store, wait=False)
            raise
        return job

    def _held_elsewhere(self, job: Job[Any], holder: Job[Any], retry: bool) -> Job[Any]:
        """Another process's job holds the key (the journal said so): that job is the answer."""
        self.unique.release(job)
        assert job.unique_key is not None
        if retry or job.options.on_duplicate == "raise":
            raise DuplicateJob(job.unique_key, holder)
        return holder

    def _limit_keys(self, job: Job[Any]) -> tuple[str | None, ...]:
        """A limited job's keys, one per limit (raising for a limit it cannot count)."""
        limits = job.options.limits
        for limit in limits:  # (a loop, not a list: this runs for every limited job)
            if limit.scope == "host":  # it needs the shared directory
                assert self.limits is not None
                self.limits.check_host(limits)
                break
        return keys_of(job)

    def _debounced(self, job: Job[Any], run_at: float | None) -> float:
        """When a debounced job is due (checking that this executor can debounce)."""
        debounce = job.options.debounce
        assert debounce is not None
        if self.store is not None:
            raise ValueError(
                f"debounce is not available with a journal yet: {job.name} would need its "
                f"stored arguments rewritten at each enqueue"
            )
        return self.clock.now() + debounce if run_at is None else run_at

    def _take_back(self, job: Job[Any], store: JobStore | None, *, wait: bool) -> None:
        """Undo an admission that a later step refused: free the key, delete the row."""
        self.unique.release(job)
        if job.options.limits and self.limits is not None:
            self.limits.forget(job)
        if store is not None:
            store.retract(job, wait=wait)
