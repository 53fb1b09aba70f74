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
from collections.abc import Callable, Iterable
from typing import Any

from .._clock import Clock
from .._errors import BrokerUnavailable, NotRunning, QueueFull
from .._job import Job, JobHooks, describe_callable
from .._jsonargs import check_json_arguments
from .._options import options_of
from .._periodic import Periodic
from .._ports import Engine, QueueHost
from .._registry import name_of
from .._stats import QueueStats
from .._status import JobStatus

__all__ = ["RemoteHooks", "RemoteQueue", "check_overlap", "close_engines", "open_engines"]

logger = logging.getLogger("backburner")

_PENDING, _SENT, _CANCELLED = JobStatus.PENDING, JobStatus.SENT, JobStatus.CANCELLED
_SUCCEEDED, _FAILED, _DEAD = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 1.0  # between tries of a send that failed


def check_overlap(
    periodic: Iterable[tuple[Periodic, str]], engine_of: Callable[[str], Engine | None]
) -> None:
    """Refuse a periodic job without ``overlap`` on a remote queue: its runs end elsewhere."""
    for spec, queue in periodic:
        engine = engine_of(queue)
        if engine is not None and not spec.overlap:
            raise ValueError(
                f"periodic job {spec.label!r} is for queue {queue!r}, which sends its "
                f"jobs to {engine.name}: this process cannot see when a run ends there, so "
                f"overlap=False cannot be kept. Give Periodic(..., overlap=True), or put it "
                f"on a local queue"
            )


async def open_engines(queues: Iterable[object]) -> None:
    """Open every engine the remote queues among ``queues`` use (each once)."""
    opened: list[Engine] = []
    try:
        for engine in _engines(queues):
            await engine.open()
            opened.append(engine)
    except BaseException:
        for engine in opened:
            await engine.close()
        raise


async def close_engines(queues: Iterable[object]) -> None:
    """Close every engine ``open_engines`` opened."""
    for engine in _engines(queues):
        try:
            await engine.close()
        except Exception:
            logger.exception("closing %s failed", engine.name)


def _engines(queues: Iterable[object]) -> list[Engine]:
    engines: dict[int, Engine] = {}
    for queue in queues:
        if isinstance(queue, RemoteQueue):
            engines.setdefault(id(queue.engine), queue.engine)
    return list(engines.values())


class RemoteHooks(JobHooks):
    """What a job sent to a remote engine adds: ``await job`` asks the engine for its result.

    The job is ``sent`` once the broker has it: this process's part is over. ``await job``
    waits for the send, then for the result through the engine's result backend (or raises
    ``RuntimeError`` saying there is none). Its id is the engine's task id.
    """

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def settle(self, job: Job[Any]) -> None:
        """Once the job was sent, wait for its outcome on the engine's workers."""
        if job.status is not _SENT:
            return  # it failed to be sent, was cancelled before, or was settled already
        succeeded, value, attempts = await self.engine.outcome(job)
        if job.status is _SENT:  # another waiter may have got there first
            job.attempt = attempts
            sent_at = job.finished_at  # its end here: when the broker took it
            if succeeded:
                job.finish(_SUCCEEDED, value)
            else:  # as a local queue says it: dead once it had retries, and used them
                job.finish(_DEAD if job.options.retries > 0 else _FAILED, exc=value)
            job.finished_at = sent_at

    def where(self) -> str:
        """The engine's name."""
        return self.engine.name


class RemoteQueue:
    """A queue whose jobs are sent to ``engine``; its ``workers`` are concurrent sends.

    It offers the executor what any queue does (the ``Queue`` port: admission, cancellation,
    shutdown, stats) without workers or threads: nothing runs here but the sending.
    """

    remote = True  # its jobs run in the engine's workers

    def __init__(
        self,
        name: str,
        workers: int,
        max_pending: int,
        engine: Engine,
        *,
        host: QueueHost,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
    ) -> None:
        self.name = name
        self.workers = workers
        self.max_pending = max_pending
        self.engine = engine
        self.hooks = RemoteHooks(engine)
        self._host = host
        self._clock = clock
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._buffer: deque[tuple[Job[Any], str, float | None]] = deque()
        self._wakeup = asyncio.Event()
        self._senders: list[asyncio.Task[None]] = []
        self._in_flight: dict[Job[Any], None] = {}  # ordered: jobs being sent now
        self._enqueued = self._sent = self._send_failed = self._cancelled = 0
        self._last_error: BaseException | None = None

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

    def durations(self) -> None:
        """No job runs here: how long they ran is the engine's to measure."""
        return None

    def wait_totals(self) -> tuple[int, float]:
        """No job starts here: their waits are the engine's to count."""
        return 0, 0.0

    def problem(self) -> str | None:
        """Why jobs are no longer sent: sender tasks that ended while running; else None.

        A sender loops until shutdown cancels it; one that ended before (its engine raised
        ``CancelledError`` or a ``BaseException`` from ``send``) sends nothing more. Its
        exception is left unread: asyncio still reports it when the task is collected.
        """
        ended = [task for task in self._senders if task.done()]
        if not ended:
            return None
        cancelled = sum(task.cancelled() for task in ended)
        return (
            f"{len(ended)} of the {len(self._senders)} sender tasks of queue {self.name!r} "
            f"ended ({cancelled} cancelled, {len(ended) - cancelled} raised): its jobs are "
            f"no longer sent to {self.engine.name}"
        )

    def timed_counts(self) -> tuple[int, int]:
        """Nothing waits for its time here: the engine holds delayed jobs and retries."""
        return 0, 0

    # Steering: a remote queue has none here.

    def pause(self) -> None:
        """Refused: the engine's workers run the jobs, so pause them there."""
        raise ValueError(
            f"queue {self.name!r} sends its jobs to {self.engine.name}, whose workers run "
            f"them: pause them there (a remote queue has no workers here to hold)"
        )

    def resume(self, dispatch: bool) -> None:
        """Nothing to resume: a remote queue is never paused."""

    # Admission: any thread.

    def check(self, job: Job[Any], run_at: float | None) -> None:
        """Refuse what the engine cannot carry (before a key is claimed or anything sent)."""
        if job.options.limits or job.options.debounce is not None:
            raise ValueError(
                f"queue {self.name!r} sends its jobs to {self.engine.name}: limits and "
                f"debounce are kept by this process's workers, so {job.name} cannot have them "
                f"there. Put it on a local queue"
            )
        self._check(job, run_at)

    def submit_limited(self, job: Job[Any], keys: tuple[str | None, ...] | None = None) -> None:
        """Never reached: ``check`` refuses limited jobs."""
        raise AssertionError("a remote queue takes no limited job")

    def push_back(self, job: Job[Any], args: tuple[Any, ...], kwargs: Any, when: float) -> bool:
        """Never reached: ``check`` refuses debounced jobs."""
        return False

    def held_jobs(self, limit: int | None = None) -> list[Job[Any]]:
        """No limit holds anything here."""
        return []

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
            job.hooks = self.hooks
            item = (job, task_name, due)
            self._buffer.append(item)
            self._enqueued += 1
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()
        else:
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # the loop has closed under us: take the job back, say so
                with self._lock:
                    self._buffer.remove(item)
                    self._enqueued -= 1
                raise NotRunning(
                    "the executor's event loop has closed; it accepts no jobs"
                ) from None

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

    async def asubmit(self, job: Job[Any]) -> None:
        """``aenqueue``: check, send now, return once the broker has the job (or raise)."""
        task_name, due = self._check(job, None)
        job.hooks = self.hooks
        with self._lock:
            self._enqueued += 1
        if asyncio.get_running_loop() is self._loop:
            await self._send_now(job, task_name, due)
        else:  # awaited on another loop: the broker's connections live on the executor's
            sending = self._send_now(job, task_name, due)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sending, self._loop))

    async def _send_now(self, job: Job[Any], task_name: str, due: float | None) -> None:
        self._in_flight[job] = None
        try:
            await asyncio.wait_for(self.engine.send(job, task_name, due), self.engine.send_timeout)
        except asyncio.CancelledError:
            job.finish(_CANCELLED)
            self._host.keep(job)
            raise
        except Exception as exc:
            self._send_failed += 1
            self._last_error = exc
            job.finish(_FAILED, exc=exc)
            self._host.keep(job)
            raise self._unavailable(job, exc) from exc
        else:
            self._sent += 1
            self._last_error = None
            job.finish(_SENT)
            self._host.keep(job)
        finally:
            del self._in_flight[job]
            self._host.job_ended()

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
            due = time.time() + max(0.0, when - self._clock.now())
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
            if job.status is not _PENDING:  # cancelled while it waited
                self._host.job_ended()
                continue
            self._in_flight[job] = None
            try:
                await self._deliver(job, task_name, due)
            finally:
                del self._in_flight[job]
                self._host.job_ended()

    async def _deliver(self, job: Job[Any], task_name: str, due: float | None) -> None:
        give_up = time.monotonic() + self.engine.retry_sends_for
        pause = _FIRST_PAUSE
        while True:
            try:
                await asyncio.wait_for(
                    self.engine.send(job, task_name, due), self.engine.send_timeout
                )
            except asyncio.CancelledError:
                job.finish(_CANCELLED)  # cut short by shutdown: the broker may have it or not
                self._host.keep(job)
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
                job.finish(_SENT)
                self._host.keep(job)
                return

    def _fail(self, job: Job[Any], exc: BaseException) -> None:
        self._send_failed += 1
        error = BrokerUnavailable(
            f"job {job.id} ({job.name}) could not be sent to {self.engine.name} within "
            f"{self.engine.retry_sends_for:.0f}s: {type(exc).__name__}: {exc}. It is in "
            f"failures(): retry(job) sends it again once the broker is back"
        )
        error.__cause__ = exc
        job.finish(_FAILED, exc=error)
        self._host.keep(job)
        self._host.job_failed(job, error)

    # Cancellation: any thread.

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel a job still waiting to be sent; a job sent (or being sent) is out of reach."""
        with self._lock:
            if job in self._in_flight or job.try_cancel_waiting() is None:
                return False
            self._cancelled += 1
        job.finish(_CANCELLED)
        self._host.keep(job)
        return True

    def release_unique(self, job: Job[Any]) -> None:
        """Nothing to free: a remote queue refuses unique jobs at enqueue."""

    def held_by(self, job: Job[Any]) -> str | None:
        """No limit holds a job here: a remote queue refuses limited jobs at enqueue."""
        return None

    def task_of(self, job: Job[Any]) -> asyncio.Task[None] | None:
        """None: a job sent to a remote engine runs there, in no task of this process."""
        return None

    # Shutdown: loop thread only.

    def stop_accepting_waiters(self) -> None:
        """Nothing waits for room here: ``aenqueue`` sends its job itself."""

    def take_pending(self) -> list[Job[Any]]:
        """Remove and return every job not sent yet, marked cancelled."""
        with self._lock:
            jobs = [job for job, _, _ in self._buffer if job.try_cancel_waiting() is not None]
            self._buffer.clear()
            self._cancelled += len(jobs)
        for job in jobs:
            job.finish(_CANCELLED)
            self._host.keep(job)
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
