"""Queues whose jobs run elsewhere: handed to a remote engine (a taskiq broker) by name.

A remote queue takes the place of a ``JobQueue`` in the executor's table of queues, so the
enqueue path is the same code for both and costs a local job nothing more. At enqueue it
checks what the engine can honour (a registered function, JSON arguments, options the engine
carries) and refuses anything else with a clear error. Then:

* ``enqueue`` (sync, never waits for the network) puts the job in a bounded buffer and returns
  its handle, ``pending``; ``workers`` sender tasks on the event loop send the buffer in order
  of arrival. A send that fails is tried again (with a backoff, for ``retry_sends_for``
  seconds); a job that could not be sent by then fails with ``BrokerUnavailable``, is logged at
  ERROR with its id and joins ``failures()`` (``retry(job)`` sends it again).
* ``await aenqueue`` sends the job itself and returns once the broker has it (``sent``), or
  raises ``BrokerUnavailable``: no buffer, nothing left to report later.

Nothing here imports taskiq: the engine (``backburner.taskiq.TaskiqEngine``) is reached
through the ``Engine`` protocol below.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._config import QueueConfig
from ._errors import BrokerUnavailable, QueueFull
from ._job import Job, describe_callable
from ._jsonargs import check_json_arguments
from ._options import JobOptions, options_of
from ._queue import JobQueue
from ._registry import name_of
from ._stats import QueueStats
from ._status import JobStatus

if TYPE_CHECKING:
    from ._executor import Backburner

__all__ = [
    "Engine",
    "RemoteJob",
    "RemoteQueue",
    "close_engines",
    "engine_of",
    "make_queue",
    "open_engines",
]

logger = logging.getLogger("backburner")

_PENDING, _SENT, _CANCELLED = JobStatus.PENDING, JobStatus.SENT, JobStatus.CANCELLED
_SUCCEEDED, _FAILED, _DEAD = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 1.0  # between tries of a send that failed


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


def engine_of(config: QueueConfig, default: Engine | None) -> Engine | None:
    """The engine a queue's jobs go to: its own, else the executor's; None runs them here."""
    return config.engine if config.engine is not None else default


def make_queue(
    name: str, config: QueueConfig, default_engine: Engine | None, executor: Backburner
) -> JobQueue:
    """The queue ``open()`` makes for ``config``: a ``RemoteQueue`` if it has an engine."""
    engine = engine_of(config, default_engine)
    if engine is None:
        return JobQueue(name, config.workers, config.max_pending, executor)
    for runner in executor._periodic.values():
        if runner.queue == name and not runner.spec.overlap:
            raise ValueError(
                f"periodic job {runner.spec.label!r} is for queue {name!r}, which sends its "
                f"jobs to {engine.name}: this process cannot see when a run ends there, so "
                f"overlap=False cannot be kept. Give Periodic(..., overlap=True), or put it on "
                f"a local queue"
            )
    return RemoteQueue(name, config.workers, config.max_pending, executor, engine)


async def open_engines(queues: dict[str, JobQueue]) -> None:
    """Open every engine the executor's remote queues use (each once)."""
    opened: list[Engine] = []
    try:
        for engine in _engines(queues):
            await engine.open()
            opened.append(engine)
    except BaseException:
        for engine in opened:
            await engine.close()
        raise


async def close_engines(queues: dict[str, JobQueue]) -> None:
    """Close every engine ``open_engines`` opened."""
    for engine in _engines(queues):
        try:
            await engine.close()
        except Exception:
            logger.exception("closing %s failed", engine.name)


def _engines(queues: dict[str, JobQueue]) -> list[Engine]:
    engines: dict[int, Engine] = {}
    for queue in queues.values():
        if isinstance(queue, RemoteQueue):
            engines.setdefault(id(queue.engine), queue.engine)
    return list(engines.values())


class RemoteJob(Job[Any]):
    """A job sent to a remote engine: ``sent`` once the broker has it; its end is over there.

    Its id is the engine's task id. ``await job`` waits for the send, then for the result
    through the engine's result backend (or raises ``RuntimeError`` saying there is none).
    """

    # No slots of its own: a Job made by the executor becomes a RemoteJob in place
    # (``__class__`` assignment needs the same layout), so the enqueue path stays one path.
    __slots__ = ()

    async def wait(self) -> None:
        """Wait until the job was sent, then until its result is known (see the class)."""
        await Job.wait(self)
        if self._status is not _SENT:
            return  # it failed to be sent, or was cancelled before
        owner = self._owner
        assert isinstance(owner, RemoteQueue)
        succeeded, value, attempts = await owner.engine.outcome(self)
        if self._status is _SENT:  # another waiter may have got there first
            self.attempt = attempts
            if succeeded:
                self._status, self._result = _SUCCEEDED, value
            else:  # as a local queue says it: dead once it had retries, and used them
                self._exception = value
                self._status = _DEAD if self.options.retries > 0 else _FAILED

    def result(self) -> Any:
        """The job's value once ``await job`` fetched it; see ``Job.result``."""
        if self._status is _SENT:
            raise RuntimeError(
                f"job {self.id} ({self.name}) was sent to {self._engine_name()} and runs on its "
                f"workers: 'await job' fetches its result from the broker's result backend"
            )
        return Job.result(self)

    def _engine_name(self) -> str:
        owner = self._owner
        return owner.engine.name if isinstance(owner, RemoteQueue) else "a remote engine"


class RemoteQueue(JobQueue):
    """A queue whose jobs are sent to ``engine``; its ``workers`` are concurrent sends.

    It offers the executor the methods of a ``JobQueue`` (admission, cancellation, shutdown,
    stats) without one of its workers or threads: nothing runs here but the sending.
    """

    def __init__(
        self, name: str, workers: int, max_pending: int, executor: Backburner, engine: Engine
    ) -> None:
        # Not JobQueue.__init__: none of its slots, threads or scheduler are used here.
        self.name = name
        self.workers = workers
        self.max_pending = max_pending
        self.engine = engine
        self._executor = executor
        assert executor.loop is not None, "queues are made by Backburner.open()"
        self._loop = executor.loop
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._buffer: deque[tuple[Job[Any], str, float | None]] = deque()
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._wakeup = asyncio.Event()
        self._senders: list[asyncio.Task[None]] = []
        self._in_flight: dict[Job[Any], None] = {}  # ordered: jobs being sent now
        self._enqueued = self._sent = self._send_failed = self._cancelled = 0
        self._last_error: BaseException | None = None
        # What the dashboard and the inspection functions read of a local queue: a remote
        # queue schedules nothing here (the engine holds delayed jobs) and starts no job.
        self._scheduled = self._retrying = 0
        self._paused = False

    def __repr__(self) -> str:
        return f"<RemoteQueue {self.name!r} -> {self.engine.name}>"

    # Inspection (the dashboard's): what waits here is what waits to be sent.

    def waiting_jobs(self) -> list[Job[Any]]:
        """The jobs waiting in the send buffer, oldest first. Any thread."""
        with self._lock:
            return [job for job, _, _ in self._buffer]

    def pending_jobs(self, offset: int = 0, limit: int | None = None) -> list[Job[Any]]:
        """Waiting jobs in the order they will be sent. Any thread."""
        stop = None if limit is None else offset + limit
        return self.waiting_jobs()[offset:stop]

    def wait_totals(self) -> tuple[int, float]:
        """No job starts here: their waits are the engine's to count."""
        return 0, 0.0

    # Admission: any thread.

    def submit(self, job: Job[Any]) -> None:
        """Check ``job`` and put it in the send buffer, or raise. Never waits for the network."""
        self._buffer_job(job, *self._check(job, None))

    def submit_at(self, job: Job[Any], when: float, status: JobStatus) -> None:
        """Like ``submit``; the engine holds the job until clock time ``when``."""
        self._buffer_job(job, *self._check(job, when))

    def _buffer_job(self, job: Job[Any], task_name: str, due: float | None) -> None:
        with self._lock:
            if len(self._buffer) >= self.max_pending:
                raise QueueFull(self.name, self.max_pending, self._full_message())
            job.__class__ = RemoteJob
            job._status = _PENDING
            self._buffer.append((job, task_name, due))
            self._enqueued += 1
        self._call_soon(self._wakeup.set)

    def _full_message(self) -> str:
        cause = ""
        if self._last_error is not None:
            cause = f"; the last send failed: {self._last_error}"
        return (
            f"queue {self.name!r} is full: {self.max_pending} jobs wait to be sent to "
            f"{self.engine.name} (max_pending={self.max_pending}){cause}. Use "
            f"'await aenqueue(...)', which sends the job itself and raises if the broker "
            f"cannot take it"
        )

    async def asubmit(self, job: Job[Any]) -> Job[Any]:
        """``aenqueue``: check, send now, return once the broker has the job (or raise)."""
        task_name, due = self._check(job, None)
        job.__class__ = RemoteJob
        with self._lock:
            self._enqueued += 1
        if asyncio.get_running_loop() is self._loop:
            await self._send_now(job, task_name, due)
        else:  # awaited on another loop: the broker's connections live on the executor's
            sending = self._send_now(job, task_name, due)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sending, self._loop))
        return job

    async def _send_now(self, job: Job[Any], task_name: str, due: float | None) -> None:
        self._in_flight[job] = None
        try:
            await asyncio.wait_for(self.engine.send(job, task_name, due), self.engine.send_timeout)
        except asyncio.CancelledError:
            job._finish(_CANCELLED)
            raise
        except Exception as exc:
            self._send_failed += 1
            self._last_error = exc
            job._finish(_FAILED, exc=exc)
            raise self._unavailable(job, exc) from exc
        else:
            self._sent += 1
            self._last_error = None
            job._finish(_SENT)
        finally:
            del self._in_flight[job]
            self._executor._job_ended()

    def _check(self, job: Job[Any], when: float | None) -> tuple[str, float | None]:
        fn = job.fn
        label = describe_callable(fn)
        task_name = name_of(fn)
        if task_name is None or "<" in label:
            raise TypeError(
                f"{label} cannot be sent to {self.engine.name} (queue {self.name!r}): its "
                f"workers find a job's function by its registered name. Define it at module "
                f"level, decorate it with @job() (or @job(name='...')), and import that module "
                f"in the worker"
            )
        check_json_arguments(label, job.args, job.kwargs, f"{self.engine.name} sends")
        options = job.options
        if options.unique is not None:
            raise ValueError(
                f"{label}: unique= is not available on queue {self.name!r}, which sends its "
                f"jobs to {self.engine.name}: its key would be held here while the job runs "
                f"elsewhere. Drop unique=, or enqueue it on a local queue"
            )
        if options.retry_on != options_of(fn).retry_on:
            raise ValueError(
                f"{label}: options(retry_on=...) cannot be sent to {self.engine.name}: "
                f"exception classes are not data. Set it with @job(retry_on=...), which the "
                f"workers read from the function"
            )
        self.engine.check(label, options, when is not None)
        due = None
        if when is not None:  # the executor's clock time, as wall-clock time for the broker
            due = time.time() + max(0.0, when - self._executor.clock.now())
        return task_name, due

    def _unavailable(self, job: Job[Any], exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"job {job.id} ({job.name}) could not be sent to {self.engine.name}: "
            f"{type(exc).__name__}: {exc}. Check that the broker is up and reachable; "
            f"the job was not accepted, so enqueue it again once it is"
        )

    # Sending: loop thread only.

    def start(self) -> None:
        """Start the sender tasks; jobs buffered before now are sent first."""
        if not self._senders:
            self._senders = [
                self._loop.create_task(self._send_buffered()) for _ in range(self.workers)
            ]

    async def _send_buffered(self) -> None:
        while True:
            with self._lock:
                item = self._buffer.popleft() if self._buffer else None
            if item is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job, task_name, due = item
            self._wake_room_waiters(1)
            if job._status is not _PENDING:  # cancelled while it waited
                self._executor._job_ended()
                continue
            self._in_flight[job] = None
            try:
                await self._deliver(job, task_name, due)
            finally:
                del self._in_flight[job]
                self._executor._job_ended()

    async def _deliver(self, job: Job[Any], task_name: str, due: float | None) -> None:
        give_up = time.monotonic() + self.engine.retry_sends_for
        pause = _FIRST_PAUSE
        while True:
            try:
                await asyncio.wait_for(
                    self.engine.send(job, task_name, due), self.engine.send_timeout
                )
            except asyncio.CancelledError:
                job._finish(_CANCELLED)  # cut short by shutdown: the broker may have it or not
                raise
            except Exception as exc:
                if self._last_error is None:
                    logger.warning(
                        "cannot send jobs of queue %r to %s (%s: %s); trying each again for "
                        "up to %.0fs",
                        self.name,
                        self.engine.name,
                        type(exc).__name__,
                        exc,
                        self.engine.retry_sends_for,
                    )
                self._last_error = exc
                if time.monotonic() + pause > give_up:
                    self._fail(job, exc)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
            else:
                if self._last_error is not None:
                    logger.info("sending to %s works again", self.engine.name)
                self._last_error = None
                self._sent += 1
                job._finish(_SENT)
                return

    def _fail(self, job: Job[Any], exc: BaseException) -> None:
        self._send_failed += 1
        error = BrokerUnavailable(
            f"job {job.id} ({job.name}) could not be sent to {self.engine.name} within "
            f"{self.engine.retry_sends_for:.0f}s: {type(exc).__name__}: {exc}. It is in "
            f"failures(): retry(job) sends it again once the broker is back"
        )
        error.__cause__ = exc
        job._finish(_FAILED, exc=error)
        self._executor._report_failure(job, error)

    # Cancellation: any thread.

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel a job still waiting to be sent; a job sent (or being sent) is out of reach."""
        with self._lock:
            if job._status is not _PENDING or job in self._in_flight:
                return False
            job._status = _CANCELLED
            self._cancelled += 1
        job._finish(_CANCELLED)
        return True

    # Shutdown: loop thread only.

    def take_pending(self) -> list[Job[Any]]:
        """Remove and return every job not sent yet, marked cancelled."""
        with self._lock:
            jobs = [job for job, _, _ in self._buffer if job._status is _PENDING]
            self._buffer.clear()
            for job in jobs:
                job._status = _CANCELLED
            self._cancelled += len(jobs)
        for job in jobs:
            job._finish(_CANCELLED)
        return jobs

    def drop_scheduled(self, jobs: list[Job[Any]]) -> None:
        """Nothing to drop: delayed jobs wait in the engine, not in this process."""

    def running_jobs(self) -> list[Job[Any]]:
        """The jobs being sent now."""
        return list(self._in_flight)

    def cancel_running(self) -> list[asyncio.Task[None]]:
        """Stop the senders (a send under way is cut short); return their tasks to wait for."""
        senders, self._senders = self._senders, []
        for task in senders:
            task.cancel()
        return senders

    def abandon_running(self) -> list[Job[Any]]:
        """Nothing to abandon: a cancelled send ends at once."""
        return []

    def outstanding(self) -> int:
        """Jobs waiting to be sent or being sent: what ``join()`` waits for."""
        return len(self._buffer) + len(self._in_flight)

    def stats(self) -> QueueStats:
        """What this process knows: jobs waiting to be sent, being sent, sent, failed to send.

        Whether they ran, and how, is known to the engine (its workers' logs, its tools):
        ``processed``, ``failed`` and ``dead`` stay 0 here rather than guess.
        """
        busy = len(self._in_flight)
        return QueueStats(
            name=self.name,
            workers=self.workers,
            busy=busy,
            idle=max(0, self.workers - busy),
            pending=len(self._buffer),
            scheduled=0,
            processed=0,
            failed=0,
            cancelled=self._cancelled,
            dead=0,
            engine=self.engine.name,
            enqueued=self._enqueued,
            sent=self._sent,
            send_failed=self._send_failed,
        )
