"""The ports: what each part of backburner needs of the others, as Protocols.

Mechanisms and features are given their collaborators through these, never through a
back-reference to the executor, so that imports run one way (``docs/architecture.md``):

* ``QueueHost``: what a queue needs of whoever holds it (the executor): to hear that a job
  ended, failed for good or ended after it was given up, and to free a unique key.
* ``Queue``: what the executor needs of any queue, local (``JobQueue``) or remote (a queue
  whose jobs an ``Engine`` runs elsewhere): admission, dispatch, shutdown, stats, inspection.
* ``JobStore``: what durable mode needs (a journal): write a job down before it is queued,
  take it back if queueing failed, and the hooks that record its attempts and its end.
* ``ResultStore``: where finished jobs are kept for ``lookup`` (in memory, ``_results.py``;
  a store shared by processes can answer for the others' jobs too).
* ``JobTracer``: what tracing adds to admission: a span around each enqueue.
* ``Engine``: a remote engine (``backburner.taskiq.TaskiqEngine`` is one), public: other
  engines implement it.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from ._info import JobInfo
from ._job import Job, JobHooks
from ._options import JobOptions
from ._stats import QueueStats
from ._status import JobStatus

__all__ = ["Engine", "JobStore", "JobTracer", "Queue", "QueueHost", "ResultStore", "SharedJobs"]


class QueueHost(Protocol):
    """What a queue needs of the executor that holds it. Loop thread unless said otherwise."""

    def job_ended(self) -> None:
        """A job left the queue (ended, or was cancelled while waiting): ``join()`` may end."""
        ...

    def job_failed(self, job: Job[Any], exc: BaseException) -> None:
        """``job`` failed for good (no retry left): report it once, keep it in the dead list."""
        ...

    def late_end(
        self, job: Job[Any], error: BaseException | None, attempt: int | None = None
    ) -> None:
        """A job given up on (abandoned, timed out) ended after all: say so. ``attempt``: the
        attempt whose thread returned, when the job may have moved on to another since."""
        ...

    def release_unique(self, job: Job[Any]) -> None:
        """``job`` ended: free its unique key. Any thread."""
        ...

    def keep(self, job: Job[Any]) -> None:
        """``job`` reached an end state: keep it for ``lookup`` (a ``ResultStore``). Any
        thread; O(1), on every job's path."""
        ...


class JobTracer(Protocol):
    """What tracing (``_otel/``) adds to admission. Any thread."""

    def publishing(
        self, job: Job[Any], run_at: float | None, stored: bool
    ) -> AbstractContextManager[Any]:
        """The span to admit ``job`` inside (``stored``: enqueued before; it gets none); it
        also gives the job the hooks that trace its attempts."""
        ...


class Queue(Protocol):
    """What the executor needs of a queue, local or remote."""

    name: str
    workers: int
    max_pending: int
    #: True if its jobs run elsewhere (an engine's workers): it refuses limits in ``check``,
    #: so enqueue's lean path for a limited job (which does not call ``check``) is not for it.
    remote: bool

    # Admission: any thread.

    def check(self, job: Job[Any], run_at: float | None) -> None:
        """Refuse (``TypeError``, ``ValueError``) a job this queue can never take."""
        ...

    def submit(self, job: Job[Any]) -> None:
        """Accept ``job`` or raise ``QueueFull``. Never blocks, never waits for the loop."""
        ...

    def submit_at(self, job: Job[Any], when: float, status: JobStatus) -> None:
        """Hold ``job`` until clock time ``when`` (``status``: scheduled or retrying)."""
        ...

    async def asubmit(self, job: Job[Any]) -> None:
        """Accept ``job``, waiting for room (or, for a remote queue, until the broker has it)."""
        ...

    def submit_limited(self, job: Job[Any], keys: tuple[str | None, ...] | None = None) -> None:
        """``submit`` for a job with limits: it waits for a worker, or a limit holds it.
        ``keys``: a new job's keys, one per limit (None: admission registered them)."""
        ...

    def push_back(self, job: Job[Any], args: tuple[Any, ...], kwargs: Any, when: float) -> bool:
        """Debounce: a job waiting for its time takes these arguments and waits until ``when``."""
        ...

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel a job of this queue wherever it is (see ``Job.cancel``)."""
        ...

    def release_unique(self, job: Job[Any]) -> None:
        """Free the unique key of a job of this queue that ended."""
        ...

    def held_by(self, job: Job[Any]) -> str | None:
        """The name of the limit holding a job of this queue, if one does."""
        ...

    def task_of(self, job: Job[Any]) -> asyncio.Task[None] | None:
        """The task running a job of this queue, if it runs (or was abandoned running) here."""
        ...

    # Lifecycle: loop thread.

    def start(self) -> None:
        """Begin running (or sending) jobs, those accepted before now first."""
        ...

    def pause(self) -> None:
        """Start no more jobs; running ones finish; jobs are still accepted."""
        ...

    def resume(self, dispatch: bool) -> None:
        """Undo ``pause()``; with ``dispatch``, start the waiting jobs now."""
        ...

    # Shutdown: loop thread.

    def stop_accepting_waiters(self) -> None:
        """Wake every ``asubmit`` waiting for room, so it sees that the executor stops."""
        ...

    def take_pending(self) -> list[Job[Any]]:
        """Stop dispatching; remove and return every waiting job, marked cancelled."""
        ...

    def drop_scheduled(self, jobs: list[Job[Any]]) -> None:
        """Mark ``jobs`` (this queue's, taken from a closed scheduler) cancelled."""
        ...

    def running_jobs(self) -> list[Job[Any]]:
        """The jobs holding a slot now."""
        ...

    def cancel_running(self) -> list[asyncio.Task[None]]:
        """Cancel what runs; return the tasks to wait for."""
        ...

    def abandon_running(self) -> list[Job[Any]]:
        """Mark what still runs at the deadline abandoned, and return it."""
        ...

    def outstanding(self) -> int:
        """Jobs waiting or running: what ``join()`` waits for."""
        ...

    # Watching: any thread.

    def stats(self) -> QueueStats:
        """A snapshot of the queue's counters."""
        ...

    def timed_counts(self) -> tuple[int, int]:
        """Jobs waiting for their time here: (scheduled and retrying, of them retrying)."""
        ...

    def pending_jobs(self, offset: int = 0, limit: int | None = None) -> list[Job[Any]]:
        """Waiting jobs in the order they will start."""
        ...

    def waiting_jobs(self) -> list[Job[Any]]:
        """A copy of the waiting jobs, cancelled ones included."""
        ...

    def held_jobs(self, limit: int | None = None) -> list[Job[Any]]:
        """The jobs a limit holds (blocked or throttled), oldest first, at most ``limit``."""
        ...

    def wait_totals(self) -> tuple[int, float]:
        """Jobs started since ``start()``, and the seconds they waited for a worker in all."""
        ...

    def durations(self) -> tuple[list[int], float] | None:
        """How long its attempts ran: a count per bucket of ``_durations.BOUNDS`` (the last:
        longer than every bound) and their seconds in all; None if its jobs run elsewhere."""
        ...

    def problem(self) -> str | None:
        """Why the queue can no longer do its work (a worker of it ended), or None."""
        ...


class JobStore(Protocol):
    """What durable mode needs of a journal: write a job down before it is queued."""

    @property
    def hooks(self) -> JobHooks:
        """The hooks each job of a journaled executor holds (its attempts and end are written)."""
        ...

    def check(self, job: Job[Any], run_at: float | None) -> object:
        """Refuse (``TypeError``) a job the store cannot keep; return what ``accept`` writes."""
        ...

    def accept(self, job: Job[Any], record: object) -> Job[Any] | None:
        """Write the job down; return once it is committed (this thread waits). If a job of
        another process holds its unique key, nothing is written: a handle on it is returned."""
        ...

    async def aaccept(self, job: Job[Any], record: object) -> Job[Any] | None:
        """Write the job down; return once it is committed (this task waits); see ``accept``."""
        ...

    def retract(self, job: Job[Any], *, wait: bool) -> None:
        """Take back a job written down whose queueing failed after all."""
        ...


class ResultStore(Protocol):
    """Where finished jobs are kept, for ``lookup``: every job that ends is handed to ``keep``.

    ``keep`` is on every job's path: it must be O(1) and never block (any thread). ``lookup``
    is async so that a store may ask elsewhere (a journal other processes share).
    """

    def keep(self, job: Job[Any]) -> None:
        """``job`` reached an end state: remember it (within the store's bounds)."""
        ...

    async def lookup(self, job_id: str) -> JobInfo | None:
        """The finished job (or its expired tombstone) with this id, or None if not kept."""
        ...


class SharedJobs(Protocol):
    """Where ``lookup`` asks last, for a job this executor does not hold: the journal the
    processes of an app share (the job may be another process's)."""

    async def lookup(self, job_id: str) -> JobInfo | None:
        """The job with this id as the shared place knows it, or None."""
        ...


@runtime_checkable
class Engine(Protocol):
    """What an executor needs of a remote engine (``backburner.taskiq.TaskiqEngine`` is one)."""

    #: For stats and logs: what carries the jobs ("taskiq RedisStreamBroker", say).
    name: str
    #: Seconds one send may take before it counts as failed.
    send_timeout: float
    #: Seconds a job from sync ``enqueue`` keeps being tried before it fails.
    retry_sends_for: float

    async def open(self) -> None:
        """Connect (the broker's client startup); called by each executor that uses it."""
        ...

    async def close(self) -> None:
        """Disconnect; called once per ``open()``."""
        ...

    def check(self, label: str, options: JobOptions, delayed: bool) -> None:
        """Raise ``ValueError`` for what the engine cannot honour (before anything is sent)."""
        ...

    async def send(self, job: Job[Any], task_name: str, due: float | None) -> None:
        """Hand the job to the broker (at wall-clock time ``due``, if given); raise on failure."""
        ...

    async def outcome(self, job: Job[Any]) -> tuple[bool, Any, int]:
        """Wait for the job's result: ``(succeeded, value or exception, attempts made)``."""
        ...
