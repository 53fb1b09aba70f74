"""``Backburner``: the queue table, its lifecycle (open, start, drain, close), entry points, stats.

The executor wires the mechanisms together and holds no mechanism of its own: its queues
report to an ``Outcomes`` (the ``QueueHost`` port), every job enters through one
``Admission``, periodic jobs are a ``PeriodicJobs``, the dead list's operations a
``DeadList``, and what opens, starts and closes with it (queues, coordination, engines,
journal, the drain, the lag monitor) is wired by its ``Parts``; a journal or a remote engine
plugs in through the ports (``JobStore``, ``JobHooks``, ``Queue``). What stays here:
settings, the lifecycle's states, the table of queues, the entry points (one inlined fast
path for ``enqueue``, which ``background`` takes too), steering and stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from . import _context
from ._admission import Admission
from ._callables import _plans, plan_call
from ._context import (
    Tokens,
    current_executor_var,
    executor_closed,
    executor_opened,
    interceptor,
    name_executor,
    request_enqueue_var,
)
from ._deadlist import DeadList
from ._enqueue import EnqueueMethods
from ._errors import NotRunning, QueueFull, ShuttingDown, not_running
from ._failures import FailedJobs
from ._history import History
from ._info import JobInfo
from ._job import Job
from ._journal import JournalConfig
from ._lookup import Lookup
from ._otel import Tracing
from ._outcomes import ErrorHook, Outcomes
from ._parts import Parts
from ._periodic import Periodic, PeriodicJobs
from ._ports import Engine, Queue
from ._results import KeptResults
from ._scheduler import Scheduler
from ._settings import QueueConfig, Settings
from ._shutdown import ShutdownReport
from ._stats import ExecutorStats
from ._unique import UniqueKeys

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._settings import BackburnerSettings

__all__ = ["Backburner", "ErrorHook"]

logger = logging.getLogger("backburner")

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

    def __init__(self, **settings: Unpack[BackburnerSettings]) -> None:
        """Configure the executor; nothing runs until ``start()`` (or ``async with``).

        The keywords are ``BackburnerSettings`` (``workers``, ``queues``, ``journal``,
        ``tracing``, ``keep_results``...), each described there. A bad value or an unknown
        keyword raises here.
        """
        checked = Settings.check(settings)
        self.queue_configs: Mapping[str, QueueConfig] = checked.queue_configs
        self.shutdown_timeout = checked.shutdown_timeout
        self.cancel_grace = checked.cancel_grace
        self.max_scheduled = checked.max_scheduled
        self.clock = checked.clock
        self.loop_lag_warning = checked.loop_lag_warning
        self.platform_grace = checked.platform_grace
        self.server_shutdown_timeout = checked.server_shutdown_timeout
        self.journal_config: JournalConfig | None = checked.journal_config
        #: The ``coordination=`` directory of this app's processes (True: the default).
        self.coordination = checked.coordination
        #: The remote engine of every queue without its own; None: jobs run in this process.
        self.engine: Engine | None = checked.engine
        self._failures = FailedJobs(checked.keep_failed)
        unique = UniqueKeys()
        c = checked
        #: Finished jobs kept for ``lookup`` (``keep_results``, ``result_ttl``).
        self.results = KeptResults(c.keep_results, c.result_ttl, c.max_result_bytes, self.clock)
        self._outcomes = Outcomes(self._failures, unique, c.on_error, self._busy, self.results)
        self._lookup = Lookup(self.results, self._failures, self)
        self._admission = Admission(unique, self._check_schedule_room, self.clock)
        self._dead = DeadList(
            self._failures, self._admission, self.clock, self._queue_for, self._adopt
        )
        self._tracing = Tracing(checked.tracing)
        #: OpenTelemetry's spans and metrics from ``open()`` on (``tracing=``); None: none.
        self.telemetry = self._tracing.telemetry
        self._periodic = PeriodicJobs(self._submit)
        #: Each queue's throughput and wait over the last minutes (the dashboard's charts).
        self.history = History()
        self.yielding = checked.yielding  # fewer jobs start while requests press (or idle)
        # The journal, coordination directory, engines and lag monitor, opened with it.
        self._parts = Parts(
            self, self._admission, self._outcomes, self._periodic, self._lookup, self._refusal
        )
        self._pauses = self._parts.pauses
        self._state_now = _State.CREATED
        self._accepting = False  # open or running: read on every enqueue, so a plain bool
        self._fast_enqueue = False  # see the _state setter
        self._alone = False  # the only open executor in the process (told by _context)
        self._queues: dict[str, Queue] = {}
        self._closed: asyncio.Event | None = None
        self._report = ShutdownReport()
        self._context_tokens: Tokens | None = None
        #: The event loop the executor runs on, from ``open()`` on.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The scheduler of delayed, periodic and retrying jobs, from ``open()`` on.
        self.scheduler: Scheduler | None = None
        for spec in checked.periodic:
            self.add_periodic(spec)

    @property
    def on_error(self) -> ErrorHook | None:
        """Called as ``on_error(job, exception)`` when a job fails for good; may be set."""
        return self._outcomes.on_error

    @on_error.setter
    def on_error(self, hook: ErrorHook | None) -> None:
        if hook is not None and not callable(hook):
            raise TypeError(f"on_error must be callable as on_error(job, exc), got {hook!r}")
        self._outcomes.on_error = hook

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
        (``EnqueueMethods.enqueue`` with one indirection less: the hottest path, which
        ``background.enqueue`` takes too.)
        """
        # `_submit` and `_prepare` inlined for the common case (a cached plan, a running
        # in-memory executor, no unique key): two calls and a tuple less per job.
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, None, None)
        try:
            plan = _plans[fn]
        except (KeyError, TypeError):
            plan = plan_call(fn)
        spec = plan.spec
        options = spec.options
        if spec.fn is not fn:  # (equal, not the same: a bound method made anew, say)
            spec = plan.spec_for(fn, options, options.queue)
        queue = self._queues.get(options.queue) if self._fast_enqueue else None
        if queue is None or not options.plain:
            lone = options.lone_limit
            if queue is None or lone is None or queue.remote:  # (a remote queue refuses it
                return self._submit(fn, args, kwargs, None, None)  # there, before its key)
            # Its one step at admission is its ConcurrencyLimit's key: the lines below, with
            # its key (here, not in a method of its own: a call less for every limited job).
            if kwargs or not plan.plain_min <= len(args) <= plan.plain_max:
                plan.check(fn, args, kwargs)
            job: Job[Any] = Job(spec, args, kwargs, queue)
            key = lone.key_for(fn, args, kwargs)
            if not self._alone and current_executor_var.get(None) is not self:
                self._bind(job)
            queue.submit_limited(job, (key,))  # its gate takes its key: nothing to undo before
            return job
        if kwargs or not plan.plain_min <= len(args) <= plan.plain_max:
            plan.check(fn, args, kwargs)
        job = Job(spec, args, kwargs, queue)
        if not self._alone and current_executor_var.get(None) is not self:
            self._bind(job)
        queue.submit(job)  # (admission's whole sequence, when there is no key and no journal)
        return job

    @property
    def _state(self) -> _State:
        return self._state_now

    @_state.setter
    def _state(self, state: _State) -> None:
        self._state_now = state
        self._accepting = state is _State.OPEN or state is _State.RUNNING
        # enqueue()'s inlined path: plain jobs only (no journal to write, no span to open).
        plain = self.journal_config is None and self.telemetry is None
        self._fast_enqueue = self._accepting and plain

    def _set_alone(self, alone: bool) -> None:
        self._alone = alone

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
            self.loop = loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "backburner runs on asyncio (uvicorn, hypercorn's asyncio worker, asyncio.run); "
                "no asyncio event loop is running here"
            ) from None
        self.scheduler = Scheduler(self.clock, loop)
        self._parts.check(self.scheduler)
        self.telemetry = self._admission.tracer = self._tracing.open(self)
        self._queues = self._parts.make_queues(loop, self.scheduler, self.telemetry)
        self._closed = asyncio.Event()
        await self._parts.open(self._queues)  # unfinished jobs go back into the queues first
        self._state = _State.OPEN
        executor_opened(self, self._set_alone)

    async def start(self) -> None:
        """Start running jobs (opening the executor first if needed) and periodic schedules."""
        await self.open()
        if self._state is _State.RUNNING:
            return
        self._state = _State.RUNNING
        _context.running_executors[self] = None
        assert self.scheduler is not None
        assert self.loop is not None
        self._parts.start(self.loop, self.scheduler, self._queues)

    async def aclose(self) -> ShutdownReport:
        """Stop accepting jobs, let them finish within ``shutdown_timeout``, report the rest.

        Waiting and running jobs get until ``shutdown_timeout - cancel_grace``; then waiting,
        scheduled and retrying jobs are dropped and running ones cancelled, and get the rest of
        the budget to clean up. Whatever is still running then is abandoned. Every job that did
        not finish is listed in one warning log record and in the returned report. Returns at
        the latest ``shutdown_timeout`` seconds after it was called, unless a job blocks the
        event loop meanwhile (no in-process executor can keep a deadline then).
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
        self._parts.stop()  # no more ticks; every worker back from yielding: the drain needs them
        if was_running:
            logger.info(
                "draining %d jobs (shutdown_timeout=%.1fs)",
                sum(q.outstanding() for q in queues),
                self.shutdown_timeout,
            )
        wait_idle = self._wait_idle if was_running else None
        self._report = await self._parts.drain(queues, began, deadline, wait_idle)
        await self._parts.close(self._queues, deadline)
        self._state = _State.CLOSED
        _context.running_executors.pop(self, None)
        executor_closed(self)
        self._outcomes.wake_idle_waiters()
        assert self._closed is not None
        self._closed.set()
        return self._report

    async def __aenter__(self) -> Backburner:
        await self.start()
        # Inside `async with bg:`, `background` means bg (and jobs enqueued here carry it).
        self._context_tokens = name_executor(self, self.enqueue)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tokens, self._context_tokens = self._context_tokens, None
        if tokens is not None:
            with contextlib.suppress(ValueError):  # exited in another context than entered
                current_executor_var.reset(tokens[0])
                request_enqueue_var.reset(tokens[1])
        await self.aclose()

    # Enqueueing (the public methods are in EnqueueMethods): every path ends in admission.

    def _prepare(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
    ) -> tuple[Job[Any], Queue]:
        try:
            plan = _plans[fn]
        except (KeyError, TypeError):
            plan = plan_call(fn)
        options = plan.spec.options
        if changes:
            options = options.replace(**changes)
        queue = self._queues.get(options.queue) if self._accepting else None
        if queue is None:
            queue = self._queue_for(options.queue)  # raises, saying why
        if kwargs or not plan.plain_min <= len(args) <= plan.plain_max:
            plan.check(fn, args, kwargs)
        key = None if options.unique is None else options.key_for(args, kwargs)
        store = self._admission.store
        hooks = None if store is None else store.hooks
        spec = plan.spec_for(fn, options, queue.name)
        job: Job[Any] = Job(spec, args, kwargs, queue, key, hooks)
        if not self._alone and current_executor_var.get(None) is not self:
            self._bind(job)
        return job, queue

    def _adopt(self, job: Job[Any]) -> None:
        if not self._alone and current_executor_var.get(None) is not self:
            self._bind(job)

    def _bind(self, job: Job[Any]) -> None:
        # Inside the job, `background` means this executor. Done here, where the enqueuer's
        # context is current, not in every job's first step; enqueues inside the executor's
        # scope (a request, `async with bg:`) need nothing, and neither does any enqueue while
        # this is the only open executor (`_alone`): `current_executor()` finds it then.
        job.context.run(name_executor, self, self.enqueue)

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
        return self._admission.admit(job, queue, run_at)

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
        assert self.loop is not None  # _prepare() found a queue: open() set it
        return await self._admission.aadmit(job, queue, self.loop)

    def _check_schedule_room(self) -> None:
        assert self.scheduler is not None
        if len(self.scheduler) >= self.max_scheduled:
            raise QueueFull(
                "(scheduled)",
                self.max_scheduled,
                f"the schedule is full: {self.max_scheduled} jobs already wait for their time "
                f"(max_scheduled={self.max_scheduled}). Raise max_scheduled or enqueue now.",
            )

    def _queue_for(self, name: str) -> Queue:
        if not self._accepting:
            raise self._not_running()
        try:
            return self._queues[name]
        except KeyError:
            raise ValueError(
                f"no queue named {name!r}; this executor has {sorted(self._queues)}. "
                f"Declare it with Backburner(queues={{{name!r}: QueueConfig(...)}})"
            ) from None

    def _refusal(self) -> NotRunning | None:
        return None if self._accepting else self._not_running()

    def _not_running(self) -> NotRunning:
        return not_running(self._state.value)

    # Periodic jobs.

    def add_periodic(self, spec: Periodic) -> None:
        """Register a periodic job; it starts with the executor (at once, if running)."""
        self._periodic.register(spec, self.queue_configs)

    def trigger(self, name: str) -> Job[Any] | None:
        """Run the periodic job ``name`` now; None if its last run is still going."""
        return self._periodic.trigger(name)

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
        return self._dead.retry(job)

    def discard(self, job: Job[Any] | str) -> bool:
        """Forget a job in ``failures()``; False if it was not there."""
        return self._dead.discard(job)

    def retry_all(self) -> int:
        """``retry`` every job in ``failures()``; returns how many were sent."""
        return self._dead.retry_all()

    def discard_all(self) -> int:
        """Forget every job in ``failures()``; returns how many there were."""
        return self._dead.discard_all()

    # Watching.

    def stats(self) -> ExecutorStats:
        """Counters per queue and in total, and each periodic job's schedule.

        Costs O(number of queues and periodic jobs). Counts start again at each ``start()``.
        """
        return self._parts.stats(self._queues)

    def queues(self) -> Mapping[str, Queue]:
        """The open queues by name (empty before ``open()``): for looking inside, read-only."""
        return types.MappingProxyType(self._queues)

    def find_job(self, job_id: str, *, waiting: bool = True) -> Job[Any] | None:
        """The job with this id, if the executor still holds it: running, pending, scheduled,
        retrying or in ``failures()``; None otherwise (a job that ended well is not kept).

        O(running + pending + scheduled jobs): for a dashboard or a debugging session, not for
        a hot path (keep the handle ``enqueue`` returned instead). ``waiting=False`` looks only
        at running and failed jobs, O(running + ``keep_failed``), on the loop's thread.
        """
        return self._lookup.find(job_id, waiting=waiting)

    async def lookup(self, job_id: str) -> JobInfo | None:
        """A snapshot of the job with this id in any state, or None if this executor knows
        none: pending (with its ``position``), scheduled, running (with its ``progress``),
        retrying, finished (kept ``result_ttl``: ``keep_results``), then ``expired``."""
        return await self._lookup.lookup(job_id)

    # Steering.

    def pause(self, queue: str) -> None:
        """Hold the queue's waiting jobs: running ones finish, no more start until ``resume``.

        The queue still accepts jobs (up to its ``max_pending``), delayed and retrying jobs
        still join it when due. ``join()`` does not wait for a paused queue's waiting jobs,
        and at shutdown they are reported as not started. The pause outlives a stop and a
        start of the executor, and may be set before it starts. Call it on the event loop's
        thread (an endpoint, a job); from another thread it takes effect on the loop soon.
        """
        self._pauses.pause(queue, self._queues, self.loop)

    def resume(self, queue: str) -> None:
        """Undo ``pause(queue)``: its waiting jobs start at once, oldest first.

        Raises ``ShuttingDown`` while the executor drains: shutdown already counts the paused
        queue's waiting jobs as not started.
        """
        draining = self._state is _State.DRAINING
        running = lambda: self._state is _State.RUNNING  # noqa: E731 - read on the loop
        self._pauses.resume(queue, self._queues, self.loop, draining=draining, dispatch=running)

    def paused(self) -> frozenset[str]:
        """The names of the paused queues."""
        return frozenset(self._pauses.names)

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
        elif self._busy():
            raise RuntimeError(
                "join() would wait forever: the executor's event loop is not running, so none "
                "of its jobs can end. Await join() in a coroutine that runs on that loop "
                "(loop.run_until_complete(bg.join())), or keep the loop running meanwhile"
            )

    async def _wait_idle(self, until: float | None) -> None:
        await self._outcomes.wait_idle(until, lambda: self._state is _State.CLOSED)

    def _busy(self) -> bool:
        return any(queue.outstanding() for queue in self._queues.values())
