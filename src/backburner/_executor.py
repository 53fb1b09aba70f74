"""``Backburner``: named queues, their lifecycle (open, start, drain, close), enqueue and stats."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from ._budget import Auto, check_budget_setting, check_server_timeout, warn_if_over_budget
from ._callables import _plans, plan_call
from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_QUEUE,
    QueueConfig,
    check_count,
    check_engine,
    check_queue_name,
    check_timeout,
)
from ._context import (
    current_executor_var,
    executor_closed,
    executor_opened,
    interceptor,
    running_executors,
)
from ._durable import asubmit, submit
from ._enqueue import EnqueueMethods
from ._errors import DuplicateJob, NotRunning, QueueFull, ShuttingDown
from ._errortext import error_line, log_failure
from ._failures import FailedJobs
from ._history import History
from ._job import Job
from ._journal import Durability, Journal, JournalConfig
from ._lag import LagMonitor, check_lag_threshold
from ._options import options_of
from ._periodic import Periodic, PeriodicRunner, TickGate
from ._queue import JobQueue
from ._recovery import open_journal
from ._remote import Engine, RemoteQueue, close_engines, engine_of, make_queue, open_engines
from ._scheduler import Scheduler
from ._shutdown import ShutdownReport
from ._stats import ExecutorStats, QueueStats
from ._status import JobStatus
from ._unique import UniqueKeys

__all__ = ["Backburner"]

logger = logging.getLogger("backburner")

ErrorHook = Callable[[Job[Any], BaseException], object]

P = ParamSpec("P")
T = TypeVar("T")


class _State(enum.Enum):
    CREATED = "created"  # configured; accepts nothing yet
    OPEN = "open"  # accepts jobs, runs none yet (an app's startup may enqueue)
    RUNNING = "running"
    DRAINING = "draining"  # accepts nothing; finishing what it has
    CLOSED = "closed"  # may be started again (a TestClient used twice, say)


class Backburner(EnqueueMethods):
    """An executor of background jobs: bounded named queues of workers on the event loop.

    ::

        async with Backburner(workers=4) as bg:
            job = bg.enqueue(resize_image, path, width=640)
            await job            # the job's return value, or its exception re-raised
            await bg.join()      # until nothing is pending or running

    In a web app, ``BackburnerMiddleware`` owns one and ties it to the server's lifespan.
    Sync functions run in threads, at most ``workers`` of them per queue; async functions run on
    the event loop. The executor runs on asyncio (uvicorn, hypercorn's asyncio worker).
    """

    def __init__(
        self,
        *,
        workers: int = 4,
        max_pending: int = 10_000,
        queues: Mapping[str, QueueConfig] | None = None,
        shutdown_timeout: float = 8.0,
        cancel_grace: float | None = None,
        on_error: ErrorHook | None = None,
        keep_failed: int = 1000,
        periodic: Iterable[Periodic] = (),
        max_scheduled: int = 100_000,
        clock: Clock | None = None,
        loop_lag_warning: float | None = None,
        platform_grace: float | Auto | None = "auto",
        server_shutdown_timeout: float | Auto = "auto",
        journal: str | os.PathLike[str] | JournalConfig | None = None,
        durability: Durability | None = None,
        engine: Engine | None = None,
    ) -> None:
        """Configure the executor; nothing runs until ``start()`` (or ``async with``).

        :param workers: jobs the default queue runs at once.
        :param max_pending: jobs the default queue holds waiting; ``enqueue`` raises
            ``QueueFull`` past it.
        :param queues: more named queues, each with its own ``QueueConfig``. Naming
            ``"default"`` here replaces ``workers`` and ``max_pending``.
        :param shutdown_timeout: the whole budget, in seconds, of ``aclose()``: jobs get until
            ``shutdown_timeout - cancel_grace`` to finish, are then cancelled, and get the
            rest to clean up. The process exits within it whatever the jobs do, unless one
            blocks the event loop (the deadline is a timer on that loop).
        :param cancel_grace: the part of ``shutdown_timeout`` kept for cancelled jobs' cleanup;
            by default a quarter of it, at most one second.
        :param on_error: called as ``on_error(job, exception)`` on the event loop when a job
            fails for good (after its last retry), after the failure is logged. Its own
            exceptions are logged and ignored.
        :param keep_failed: how many failed and dead jobs ``failures()`` keeps, newest last.
        :param periodic: jobs to run on a schedule, from ``start()`` on (see ``Periodic``).
        :param max_scheduled: how many delayed and retry-waiting jobs may wait at once;
            ``enqueue_in``/``enqueue_at`` raise ``QueueFull`` past it.
        :param clock: the clock every delay, schedule, backoff and timeout reads; tests pass
            ``backburner.testing.ManualClock()`` to move time themselves.
        :param loop_lag_warning: seconds; when set, a watchdog thread logs a WARNING naming
            the job (or task) that has kept the event loop from running for longer than this.
            None (the default): off.
        :param platform_grace: seconds the platform waits after SIGTERM before SIGKILL. If the
            server's graceful shutdown plus ``shutdown_timeout`` exceeds it, ``start()`` logs a
            WARNING. ``"auto"``: 30 on Heroku (``DYNO`` is set), else no check; None: no check.
        :param server_shutdown_timeout: seconds the server may spend on open requests before
            the lifespan shutdown. ``"auto"``: uvicorn's ``--timeout-graceful-shutdown`` when
            uvicorn runs this process, else 0.
        :param journal: an SQLite file (or a ``JournalConfig``) that makes jobs durable: each
            is written there before ``enqueue`` returns, and unfinished jobs run again after a
            restart or a crash (at least once). Jobs must then be ``@job`` functions with JSON
            arguments. See "Durable jobs" in the README.
        :param durability: with ``journal``: ``"normal"`` (the default) survives the process
            being killed; ``"power"`` also survives the machine losing power, slower.
        :param engine: a remote engine (``backburner.taskiq.TaskiqEngine(broker)``) that every
            queue without an engine of its own (``QueueConfig(engine=...)``) sends its jobs to,
            to run on the engine's workers in other processes. See "When you outgrow one
            process" in the README.
        """
        configs = {DEFAULT_QUEUE: QueueConfig(workers=workers, max_pending=max_pending)}
        if queues is not None:
            if not isinstance(queues, Mapping):
                raise TypeError(
                    f"queues must map names to QueueConfig, got {type(queues).__name__}"
                )
            for name, config in queues.items():
                check_queue_name(name)
                if not isinstance(config, QueueConfig):
                    raise TypeError(
                        f"queues[{name!r}] must be a QueueConfig(workers=..., max_pending=...), "
                        f"got {type(config).__name__} {config!r}"
                    )
                configs[name] = config
        self.shutdown_timeout = check_timeout("shutdown_timeout", shutdown_timeout)
        if cancel_grace is None:
            cancel_grace = min(1.0, self.shutdown_timeout / 4)
        self.cancel_grace = check_timeout("cancel_grace", cancel_grace)
        if self.cancel_grace > self.shutdown_timeout:
            raise ValueError(
                f"cancel_grace ({cancel_grace}s) is part of shutdown_timeout "
                f"({shutdown_timeout}s) and cannot exceed it"
            )
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable as on_error(job, exc), got {on_error!r}")
        if keep_failed != 0:
            check_count("keep_failed", keep_failed, "how many failed jobs failures() keeps")
        check_count("max_scheduled", max_scheduled, "how many jobs may wait for their time")
        self.queue_configs: Mapping[str, QueueConfig] = configs
        self.on_error = on_error
        self.max_scheduled = max_scheduled
        if clock is not None and not (
            callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_at", None))
        ):
            raise TypeError(
                f"clock must have now() and call_at(when, callback, loop), like "
                f"backburner.testing.ManualClock(); got {type(clock).__name__} {clock!r}"
            )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.loop_lag_warning = check_lag_threshold(loop_lag_warning)
        self.platform_grace = check_budget_setting(
            "platform_grace", platform_grace, none_allowed=True
        )
        self.server_shutdown_timeout = check_server_timeout(server_shutdown_timeout)
        self._lag: LagMonitor | None = None
        self.journal_config = _journal_config(journal, durability)
        check_engine(engine)
        #: The remote engine of every queue without its own; None: jobs run in this process.
        self.engine = engine
        if self.journal_config is not None and (
            engine is not None or any(c.engine is not None for c in configs.values())
        ):
            raise ValueError(
                "journal= and a remote engine do not mix: a journaled job runs in this process, "
                "a remote one on the engine's workers (whose broker keeps it). Choose one"
            )
        self._journal: Journal | None = None
        self._job_class: Callable[..., Job[Any]] = Job
        self._tick_gate: TickGate | None = None  # with a journal: one tick, one process
        self._failures = FailedJobs(keep_failed)
        self._unique = UniqueKeys()
        self._periodic: dict[str, PeriodicRunner] = {}
        self._paused_queues: set[str] = set()  # kept across stop and start, like the config
        self._history = History()
        self._state_now = _State.CREATED
        self._accepting = False  # open or running: read on every enqueue, so a plain bool
        self._fast_enqueue = False  # see the _state setter
        self._alone = False  # the only open executor in the process (kept by _context)
        self._queues: dict[str, JobQueue] = {}
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Event | None = None
        self._report = ShutdownReport()
        self._context_token: contextvars.Token[Backburner] | None = None
        #: The event loop the executor runs on, from ``open()`` on.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The scheduler of delayed, periodic and retrying jobs, from ``open()`` on.
        self.scheduler: Scheduler | None = None
        for spec in periodic:
            self.add_periodic(spec)

    def __repr__(self) -> str:
        queues = ", ".join(f"{n}={c.workers}" for n, c in self.queue_configs.items())
        return f"<Backburner {self._state.value} workers: {queues}>"

    def _enqueue_target(self) -> Backburner:
        return self

    @overload
    def enqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def enqueue(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    def enqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Accept ``fn(*args, **kwargs)`` as a job; return its handle at once.

        Never waits for room: raises ``QueueFull`` if the queue is full, ``NotRunning`` if the
        executor is not running, ``TypeError`` if the call could not bind. Safe from any
        thread. With a journal, returns once the job is committed (this thread waits for it).
        (``EnqueueMethods.enqueue`` with one indirection less: the hottest path.)
        """
        # `_submit` and `_prepare` inlined for the common case (a cached plan, a running
        # executor, no unique key): two calls and a tuple less per job. The rest goes there.
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, None, None)
        try:
            plan = _plans[fn]
        except (KeyError, TypeError):
            plan = plan_call(fn)
        options = plan.options
        queue = self._queues.get(options.queue) if self._fast_enqueue else None
        if queue is None or options.unique is not None:
            return self._submit(fn, args, kwargs, None, None)
        if kwargs or not plan.plain_min <= len(args) <= plan.plain_max:
            plan.check(fn, args, kwargs)
        job: Job[Any] = Job(fn, args, kwargs, queue.name, plan.is_async, queue, options)
        if not self._alone and current_executor_var.get(None) is not self:
            self._bind(job)
        queue.submit(job)
        return job

    @property
    def _state(self) -> _State:
        return self._state_now

    @_state.setter
    def _state(self, state: _State) -> None:
        self._state_now = state
        self._accepting = state is _State.OPEN or state is _State.RUNNING
        # enqueue()'s inlined path: in-memory jobs only (a journal writes each one first).
        self._fast_enqueue = self._accepting and self.journal_config is None

    # Lifecycle.

    async def open(self) -> None:
        """Accept jobs without running them yet; ``start()`` runs them.

        For framework glue: the middleware opens the executor while the app's own startup runs,
        so that startup code may enqueue jobs that run once the app is ready.
        """
        if self._state in (_State.OPEN, _State.RUNNING):
            return
        if self._state is _State.DRAINING:
            raise ShuttingDown("the executor is shutting down; it cannot be opened again yet")
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "backburner runs on asyncio (uvicorn, hypercorn's asyncio worker, asyncio.run); "
                "no asyncio event loop is running here"
            ) from None
        self.scheduler = Scheduler(self.clock, self.loop)
        self._queues = {
            name: make_queue(name, config, self.engine, self)
            for name, config in self.queue_configs.items()
        }
        await open_engines(self._queues)  # a remote queue's broker connects now
        self._closed = asyncio.Event()
        if self.journal_config is not None:  # unfinished jobs go back into the queues first
            self._journal = await open_journal(self, self.journal_config)
        self._state = _State.OPEN
        executor_opened(self)

    async def start(self) -> None:
        """Start running jobs (opening the executor first if needed) and periodic schedules."""
        await self.open()
        if self._state is _State.RUNNING:
            return
        self._state = _State.RUNNING
        running_executors[self] = None
        for queue in self._queues.values():
            queue.start()
        assert self.scheduler is not None
        for runner in self._periodic.values():
            runner.start(self.scheduler, self._tick_gate)
        assert self.loop is not None
        self._history.start(self.clock, self.loop, self._queues.values)
        logger.info(
            "started, queues %s%s",
            ", ".join(
                f"{name} (workers={c.workers}, max_pending={c.max_pending})"
                for name, c in self.queue_configs.items()
            ),
            "".join(
                f"; periodic {r.spec.label} {r.spec.schedule}" for r in self._periodic.values()
            ),
        )
        warn_if_over_budget(
            self.shutdown_timeout, self.server_shutdown_timeout, self.platform_grace
        )
        if self.loop_lag_warning is not None:
            loop = asyncio.get_running_loop()
            self._lag = LagMonitor(loop, self.loop_lag_warning, self._running_jobs)
            self._lag.start()

    async def aclose(self) -> ShutdownReport:
        """Stop accepting jobs, let them finish within ``shutdown_timeout``, report the rest.

        Waiting and running jobs get until ``shutdown_timeout - cancel_grace``; then waiting,
        scheduled and retrying jobs are dropped and running ones cancelled, and get the rest of
        the budget to clean up. Whatever is still running then is abandoned. Every job that did
        not finish is listed in one warning log record and in the returned report. Returns at
        the latest ``shutdown_timeout`` seconds after it was called, unless a job blocks the
        event loop (a ``time.sleep`` in its ``finally``, say): then that much later.
        """
        if self._state in (_State.CREATED, _State.CLOSED):
            return self._report
        if self._state is _State.DRAINING:
            assert self._closed is not None
            await self._closed.wait()
            return self._report
        was_running = self._state is _State.RUNNING
        self._state = _State.DRAINING
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.shutdown_timeout
        queues = list(self._queues.values())
        for runner in self._periodic.values():
            runner.stop()
        self._history.stop()
        for queue in queues:
            queue.stop_accepting_waiters()
        if was_running:
            logger.info(
                "draining %d jobs (shutdown_timeout=%.1fs)",
                sum(q.outstanding() for q in queues),
                self.shutdown_timeout,
            )
            await self._wait_idle(deadline - self.cancel_grace)
        if self._journal is not None:
            self._journal.keep_unfinished()  # what shutdown cuts short stays in the journal
        scheduled = self._drop_scheduled()
        not_started = [job for queue in queues for job in queue.take_pending()]
        running = [job for queue in queues for job in queue.running_jobs()]
        tasks = [task for queue in queues for task in queue.cancel_running()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for queue in queues:
            queue.abandon_running()  # ignored their cancellation: leave them, say so
        scheduled += self._drop_scheduled()  # retries that failing jobs asked for meanwhile
        self._report = ShutdownReport(
            scheduled=tuple(scheduled),
            not_started=tuple(not_started),
            cancelled=tuple(j for j in running if j.status is JobStatus.CANCELLED),
            abandoned=tuple(j for j in running if j.status is JobStatus.ABANDONED),
            elapsed=loop.time() - began,
            journal=None if self._journal is None else str(self._journal.path),
        )
        self._report.log(self.shutdown_timeout)
        if self._lag is not None:
            self._lag.stop()
            self._lag = None
        if self._journal is not None:
            # Releases them, before the server hears we are done; within what is left of the
            # budget (and a second at least: a release is a few rows).
            await self._journal.close(max(1.0, deadline - loop.time()))
            self._journal, self._job_class, self._tick_gate = None, Job, None
        await close_engines(self._queues)
        self._state = _State.CLOSED
        running_executors.pop(self, None)
        executor_closed(self)
        self._wake_idle_waiters()
        assert self._closed is not None
        self._closed.set()
        return self._report

    def _drop_scheduled(self) -> list[Job[Any]]:
        assert self.scheduler is not None
        jobs = [job for job in self.scheduler.close() if isinstance(job, Job)]
        for queue in self._queues.values():
            queue.drop_scheduled([job for job in jobs if job.queue == queue.name])
        return jobs

    async def __aenter__(self) -> Backburner:
        await self.start()
        # Inside `async with bg:`, `background` means bg (and jobs enqueued here carry it).
        self._context_token = current_executor_var.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        token, self._context_token = self._context_token, None
        if token is not None:
            with contextlib.suppress(ValueError):  # exited in another context than entered
                current_executor_var.reset(token)
        await self.aclose()

    # Enqueueing (the public methods are in EnqueueMethods).

    def _prepare(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
    ) -> tuple[Job[Any], JobQueue]:
        # Every enqueue comes through here: the common case is inlined (a cached plan, no
        # keywords, a running executor), each step a call away when it is not.
        try:
            plan = _plans[fn]
        except (KeyError, TypeError):
            plan = plan_call(fn)
        options = plan.options
        if changes:
            options = options.replace(**changes)
        queue = self._queues.get(options.queue) if self._accepting else None
        if queue is None:
            queue = self._queue_for(options.queue)  # raises, saying why
        if kwargs or not plan.plain_min <= len(args) <= plan.plain_max:
            plan.check(fn, args, kwargs)
        key = None if options.unique is None else options.key_for(args, kwargs)
        job = self._job_class(fn, args, kwargs, queue.name, plan.is_async, queue, options, key)
        if not self._alone and current_executor_var.get(None) is not self:
            self._bind(job)
        return job, queue

    def _bind(self, job: Job[Any]) -> None:
        # Inside the job, `background` means this executor. Done here, where the enqueuer's
        # context is current, not in every job's first step; enqueues inside the executor's
        # scope (a request, `async with bg:`) need nothing, and neither does any enqueue while
        # this is the only open executor (`_alone`): `current_executor()` finds it then.
        job.context.run(current_executor_var.set, self)

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
        run_at: float | None,
    ) -> Job[Any]:
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, changes, run_at)
        job, queue = self._prepare(fn, args, kwargs, changes)
        if self._journal is not None:
            return submit(self, self._journal, job, queue, run_at)
        if job.unique_key is not None and (holder := self._unique.claim(job)) is not None:
            return holder
        try:
            if run_at is None:
                queue.submit(job)
            else:
                self._check_schedule_room()
                queue.submit_at(job, run_at, JobStatus.SCHEDULED)
        except BaseException:
            self._unique.release(job)
            raise
        return job

    async def _asubmit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
    ) -> Job[Any]:
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, changes, None)
        job, queue = self._prepare(fn, args, kwargs, changes)
        if self._journal is not None:
            return await asubmit(self, self._journal, job, queue)
        if isinstance(queue, RemoteQueue):  # sent to a broker: returns once the broker has it
            return await queue.asubmit(job)
        if job.unique_key is not None and (holder := self._unique.claim(job)) is not None:
            return holder
        try:
            if self.loop is asyncio.get_running_loop():
                await self._submit_when_room(job, queue)
            else:
                # Awaited on another event loop (another thread): the job, made here with this
                # caller's context, waits for room on the executor's loop.
                assert self.loop is not None  # _prepare() found a queue: open() set it
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(self._submit_when_room(job, queue), self.loop)
                )
        except BaseException:
            self._unique.release(job)
            raise
        return job

    async def _submit_when_room(self, job: Job[Any], queue: JobQueue) -> None:
        while True:
            try:
                queue.submit(job)
                return
            except QueueFull:
                await queue.wait_for_room()
                self._queue_for(job.queue)  # raises if the executor began to shut down

    def _check_schedule_room(self) -> None:
        assert self.scheduler is not None
        if len(self.scheduler) >= self.max_scheduled:
            raise QueueFull(
                "(scheduled)",
                self.max_scheduled,
                f"the schedule is full: {self.max_scheduled} jobs already wait for their time "
                f"(max_scheduled={self.max_scheduled}). Raise max_scheduled or enqueue now.",
            )

    def _queue_for(self, name: str) -> JobQueue:
        if not self._accepting:
            raise self._not_running()
        try:
            return self._queues[name]
        except KeyError:
            raise ValueError(
                f"no queue named {name!r}; this executor has {sorted(self._queues)}. "
                f"Declare it with Backburner(queues={{{name!r}: QueueConfig(...)}})"
            ) from None

    def _not_running(self) -> NotRunning:
        if self._state is _State.DRAINING:
            return ShuttingDown("the executor is shutting down and accepts no new jobs")
        if self._state is _State.CLOSED:
            return NotRunning("the executor has shut down and accepts no jobs")
        return NotRunning(
            "the executor has not started, so a job would never run: run the app with its "
            "lifespan (uvicorn's default; not --lifespan off; a TestClient inside "
            "'with TestClient(app):'), or use 'async with Backburner() as bg'"
        )

    # Periodic jobs.

    def add_periodic(self, spec: Periodic) -> None:
        """Register a periodic job; it starts with the executor (at once, if running)."""
        if not isinstance(spec, Periodic):
            raise TypeError(f"periodic jobs are Periodic(fn, every=... or cron=...), got {spec!r}")
        if spec.label in self._periodic:
            raise ValueError(
                f"a periodic job named {spec.label!r} is already registered: give name=..."
            )
        options = spec.options or options_of(spec.fn)
        if options.queue not in self.queue_configs:
            raise ValueError(
                f"periodic job {spec.label!r} is for queue {options.queue!r}, which this "
                f"executor does not have ({sorted(self.queue_configs)})"
            )
        runner = PeriodicRunner(spec, options.queue, self._submit_periodic)
        self._periodic[spec.label] = runner
        if self._state is _State.RUNNING:
            assert self.scheduler is not None
            runner.start(self.scheduler, self._tick_gate)

    def trigger(self, name: str) -> Job[Any] | None:
        """Run the periodic job ``name`` now; None if its last run is still going."""
        try:
            runner = self._periodic[name]
        except KeyError:
            raise ValueError(
                f"no periodic job named {name!r}; there are {sorted(self._periodic)}"
            ) from None
        return runner.trigger()

    def _submit_periodic(self, spec: Periodic) -> Job[Any]:
        changes = None
        if spec.options is not None:
            changes = {
                name: getattr(spec.options, name) for name in spec.options.__dataclass_fields__
            }
        return self._submit(spec.fn, spec.args, dict(spec.kwargs), changes, None)

    # The dead list.

    def failures(self) -> list[Job[Any]]:
        """Failed and dead jobs kept for inspection (at most ``keep_failed``), oldest first."""
        return list(self._failures)

    def retry(self, job: Job[Any] | str) -> Job[Any]:
        """Run a job from ``failures()`` once more, now; it leaves the list.

        The job keeps its id and counts one more attempt; if it fails again it comes back.
        It runs in the context of the code that retries it. A unique job whose key a live job
        holds now is not run beside it: ``DuplicateJob`` names that job. Whatever is raised,
        the job stays in ``failures()`` as it was.
        """
        taken = self._failures.take(job)
        if taken is None:
            raise ValueError(f"job {job if isinstance(job, str) else job.id} is not in failures()")
        ended = (taken._status, taken._result, taken._exception, taken.finished_at, taken._owner)
        was_due = taken.run_at
        claimed = False
        try:
            queue = self._queue_for(taken.queue)
            if taken.unique_key is not None:
                holder = self._unique.claim(taken)
                if holder is not None:
                    raise DuplicateJob(taken.unique_key, holder)
                claimed = True
            taken._reopen(queue)
            # Ready now: its wait for a worker counts from here (JobQueue._start reads these).
            taken.run_at, taken._ready_at = self.clock.now(), time.time()
            if not self._alone and current_executor_var.get(None) is not self:
                self._bind(taken)
            queue.submit(taken)
        except BaseException:
            if claimed:
                self._unique.release(taken)
            taken._status, taken._result, taken._exception, taken.finished_at, taken._owner = ended
            taken.run_at = was_due
            taken.context = None  # type: ignore[assignment]  # as it was: an ended job's is gone
            self._failures.add(taken)
            raise
        return taken

    def discard(self, job: Job[Any] | str) -> bool:
        """Forget a job in ``failures()``; False if it was not there."""
        return self._failures.take(job) is not None

    def retry_all(self) -> int:
        """``retry`` every job in ``failures()``; returns how many were sent."""
        count = 0
        for job in self.failures():
            self.retry(job)
            count += 1
        return count

    def discard_all(self) -> int:
        """Forget every job in ``failures()``; returns how many there were."""
        return len(self._failures.take_all())

    # Watching.

    def stats(self) -> ExecutorStats:
        """Counters per queue and in total, and each periodic job's schedule.

        Costs O(number of queues and periodic jobs). Counts start again at each ``start()``.
        """
        periodic = tuple(runner.stats() for runner in self._periodic.values())
        if not self._queues:  # never started: the configured sizes, nothing counted
            queues = [
                QueueStats(
                    name,
                    config.workers,
                    0,
                    config.workers,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    paused=name in self._paused_queues,
                    engine=_engine_name(engine_of(config, self.engine)),
                )
                for name, config in self.queue_configs.items()
            ]
        else:
            queues = [queue.stats() for queue in self._queues.values()]
        stats = ExecutorStats.of(queues, periodic)
        if self._journal is not None:
            stats = dataclasses.replace(stats, journal=self._journal.stats())
        return stats

    # Steering and looking up (the dashboard's needs).

    def pause(self, queue: str) -> None:
        """Hold the queue's waiting jobs: running ones finish, no more start until ``resume``.

        The queue still accepts jobs (up to its ``max_pending``), delayed and retrying jobs
        still join it when due. ``join()`` does not wait for a paused queue's waiting jobs,
        and at shutdown they are reported as not started. The pause outlives a stop and a
        start of the executor, and may be set before it starts. Call it on the event loop's
        thread (an endpoint, a job); from another thread it takes effect on the loop soon.
        """
        self._check_queue_name(queue)
        engine = engine_of(self.queue_configs[queue], self.engine)
        if engine is not None:
            raise ValueError(
                f"queue {queue!r} sends its jobs to {_engine_name(engine)}, whose workers run "
                f"them: pause them there (a remote queue has no workers here to hold)"
            )
        if self._call_on_loop(self.pause, queue):
            return
        self._paused_queues.add(queue)
        if queue in self._queues:
            self._queues[queue].pause()

    def resume(self, queue: str) -> None:
        """Undo ``pause(queue)``: its waiting jobs start at once, oldest first.

        Raises ``ShuttingDown`` while the executor drains: shutdown already counts the paused
        queue's waiting jobs as not started.
        """
        self._check_queue_name(queue)
        if self._state is _State.DRAINING and queue in self._paused_queues:
            raise ShuttingDown(
                f"the executor is shutting down: queue {queue!r} stays paused and its waiting "
                f"jobs are reported as not started"
            )
        if self._call_on_loop(self.resume, queue):
            return
        self._paused_queues.discard(queue)
        if queue in self._queues:
            self._queues[queue].resume(dispatch=self._state is _State.RUNNING)

    def paused(self) -> frozenset[str]:
        """The names of the paused queues."""
        return frozenset(self._paused_queues)

    def find_job(self, job_id: str) -> Job[Any] | None:
        """The job with this id, if the executor still holds it: running, pending, scheduled,
        retrying or in ``failures()``; None otherwise (a job that ended well is not kept).

        O(running + pending + scheduled jobs): for a dashboard or a debugging session, not for
        a hot path (keep the handle ``enqueue`` returned instead).
        """
        from ._inspect import find_job

        return find_job(self, job_id)

    def _check_queue_name(self, queue: str) -> None:
        if queue not in self.queue_configs:
            raise ValueError(
                f"no queue named {queue!r}; this executor has {sorted(self.queue_configs)}"
            )

    def _call_on_loop(self, method: Callable[[str], None], queue: str) -> bool:
        """Send ``method(queue)`` to the executor's loop if called from another thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        try:
            if asyncio.get_running_loop() is loop:
                return False
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(method, queue)
        return True

    @property
    def running(self) -> bool:
        """True between ``start()`` and the beginning of ``aclose()``."""
        return self._state is _State.RUNNING

    async def join(self) -> None:
        """Wait until no job is pending or running (jobs that enqueue jobs included).

        Scheduled and retry-waiting jobs do not count: they may be hours away; nor do the
        waiting jobs of a paused queue, which wait for ``resume``. Any event loop may await it:
        from another one than the executor's (a test's, while a ``TestClient`` runs the app
        in its own thread) the wait runs on the executor's loop, which wakes this one.
        """
        loop = self.loop
        if loop is None or loop is asyncio.get_running_loop() or self._state is _State.CLOSED:
            await self._wait_idle(None)
        elif loop.is_running():
            # Not here: `_wait_idle` reads the queues and parks a future that jobs ending on
            # the executor's thread resolve; both must happen on that thread.
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._wait_idle(None), loop))
        elif any(queue.outstanding() for queue in self._queues.values()):
            raise RuntimeError(
                "join() would wait forever: the executor's event loop is not running, so none "
                "of its jobs can end. Await join() in a coroutine that runs on that loop "
                "(loop.run_until_complete(bg.join())), or keep the loop running meanwhile"
            )

    async def _wait_idle(self, until: float | None) -> None:
        loop = asyncio.get_running_loop()
        while any(queue.outstanding() for queue in self._queues.values()):
            if self._state is _State.CLOSED:
                return
            timeout = None if until is None else until - loop.time()
            if timeout is not None and timeout <= 0:
                return
            waiter = loop.create_future()
            self._idle_waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()

    def _running_jobs(self) -> list[Job[Any]]:
        # Read by the lag monitor's thread: each list() is taken under the GIL in one step.
        return [job for queue in list(self._queues.values()) for job in queue.running_jobs()]

    # Called by the queues.

    def _job_ended(self) -> None:
        if self._idle_waiters and not any(q.outstanding() for q in self._queues.values()):
            self._wake_idle_waiters()

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _release_unique(self, job: Job[Any]) -> None:
        self._unique.release(job)

    def _report_failure(self, job: Job[Any], exc: BaseException) -> None:
        # One ERROR record with the traceback, both cut to a bounded size (_errortext.py).
        attempts = f" after {job.attempt} attempts" if job.attempt > 1 else ""
        contained = (
            ""
            if isinstance(exc, Exception)
            else f" ({type(exc).__name__} raised by a job is contained: it ends this job only, "
            f"and the server runs on)"
        )
        log_failure(
            logging.ERROR,
            "job %s failed%s: %s%s",
            (job.describe(attempt=False), attempts, error_line(exc), contained),
            exc,
            {"backburner_job_id": job.id, "backburner_job_name": job.name},
        )
        self._failures.add(job)
        if self.on_error is not None:
            try:
                self.on_error(job, exc)
            except Exception as hook_error:
                log_failure(
                    logging.ERROR,
                    "on_error hook failed for job %s: %s",
                    (job.id, error_line(hook_error)),
                    hook_error,
                    {"backburner_job_id": job.id},
                )

    def _report_late_end(self, job: Job[Any], error: BaseException | None) -> None:
        outcome = f"raised {error_line(error)}" if error else "returned"
        logger.warning(
            "job %s %s after it was given up (abandoned or timed out)",
            job.describe(),
            outcome,
            extra={"backburner_job_id": job.id},
        )


def _engine_name(engine: Engine | None) -> str:
    return "local" if engine is None else engine.name


def _journal_config(
    journal: str | os.PathLike[str] | JournalConfig | None, durability: Durability | None
) -> JournalConfig | None:
    if journal is None:
        if durability is not None:
            raise ValueError("durability= applies to a journal: give journal='path/jobs.sqlite3'")
        return None
    if isinstance(journal, JournalConfig):
        if durability is not None and durability != journal.durability:
            return dataclasses.replace(journal, durability=durability)
        return journal
    if not isinstance(journal, (str, os.PathLike)):
        raise TypeError(
            f"journal must be a file path or a JournalConfig, got {type(journal).__name__} "
            f"{journal!r}"
        )
    return JournalConfig(journal, durability=durability or "normal")
