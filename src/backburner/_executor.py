"""``Backburner``: named queues, their lifecycle (open, start, drain, close), enqueue and stats."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from ._callables import plan_call
from ._config import DEFAULT_QUEUE, QueueConfig, check_count, check_queue_name, check_timeout
from ._context import interceptor, running_executors
from ._errors import NotRunning, QueueFull, ShuttingDown
from ._job import Job
from ._queue import JobQueue
from ._shutdown import ShutdownReport
from ._stats import ExecutorStats, QueueStats
from ._status import JobStatus

__all__ = ["Backburner", "Enqueuer"]

logger = logging.getLogger("backburner")

P = ParamSpec("P")
T = TypeVar("T")

ErrorHook = Callable[[Job[Any], BaseException], object]


class _State(enum.Enum):
    CREATED = "created"  # configured; accepts nothing yet
    OPEN = "open"  # accepts jobs, runs none yet (an app's startup may enqueue)
    RUNNING = "running"
    DRAINING = "draining"  # accepts nothing; finishing what it has
    CLOSED = "closed"  # may be started again (a TestClient used twice, say)


class Backburner:
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
        keep_failed: int = 100,
    ) -> None:
        """Configure the executor; nothing runs until ``start()`` (or ``async with``).

        :param workers: jobs the default queue runs at once.
        :param max_pending: jobs the default queue holds waiting; ``enqueue`` raises
            ``QueueFull`` past it.
        :param queues: more named queues, each with its own ``QueueConfig``. Naming
            ``"default"`` here replaces ``workers`` and ``max_pending``.
        :param shutdown_timeout: the whole budget, in seconds, of ``aclose()``: jobs get until
            ``shutdown_timeout - cancel_grace`` to finish, are then cancelled, and get the
            rest to clean up. The process exits within it whatever the jobs do.
        :param cancel_grace: the part of ``shutdown_timeout`` kept for cancelled jobs' cleanup;
            by default a quarter of it, at most one second.
        :param on_error: called as ``on_error(job, exception)`` on the event loop when a job
            fails, after the failure is logged. Its own exceptions are logged and ignored.
        :param keep_failed: how many failed jobs ``failures()`` keeps, newest last.
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
        self.queue_configs: Mapping[str, QueueConfig] = configs
        self.on_error = on_error
        self._failures: deque[Job[Any]] = deque(maxlen=keep_failed)
        self._state = _State.CREATED
        self._queues: dict[str, JobQueue] = {}
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Event | None = None
        #: The event loop the executor runs on, from ``open()`` on.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._report = ShutdownReport()

    def __repr__(self) -> str:
        queues = ", ".join(f"{n}={c.workers}" for n, c in self.queue_configs.items())
        return f"<Backburner {self._state.value} workers: {queues}>"

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
        self._queues = {
            name: JobQueue(name, config.workers, config.max_pending, self)
            for name, config in self.queue_configs.items()
        }
        self._closed = asyncio.Event()
        self._state = _State.OPEN

    async def start(self) -> None:
        """Start running jobs (opening the executor first if needed)."""
        await self.open()
        if self._state is _State.RUNNING:
            return
        self._state = _State.RUNNING
        running_executors[self] = None
        for queue in self._queues.values():
            queue.start()
        logger.info(
            "backburner: started, queues %s",
            ", ".join(
                f"{n} (workers={c.workers}, max_pending={c.max_pending})"
                for n, c in self.queue_configs.items()
            ),
        )

    async def aclose(self) -> ShutdownReport:
        """Stop accepting jobs, let them finish within ``shutdown_timeout``, report the rest.

        Waiting and running jobs get until ``shutdown_timeout - cancel_grace``; then waiting
        jobs are dropped and running ones cancelled, and get the rest of the budget to clean
        up. Whatever is still running then is abandoned. Every job that did not finish is
        listed in one warning log record and in the returned report. Returns at the latest
        ``shutdown_timeout`` seconds after it was called.
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
        for queue in queues:
            queue.stop_accepting_waiters()
        if was_running:
            logger.info(
                "backburner: draining %d jobs (shutdown_timeout=%.1fs)",
                sum(q.outstanding() for q in queues),
                self.shutdown_timeout,
            )
            await self._wait_idle(deadline - self.cancel_grace)
        not_started = [job for queue in queues for job in queue.take_pending()]
        running = [job for queue in queues for job in queue.running_jobs()]
        tasks = [task for queue in queues for task in queue.cancel_running()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for queue in queues:
            queue.abandon_running()  # ignored their cancellation: leave them, say so
        self._report = ShutdownReport(
            not_started=tuple(not_started),
            cancelled=tuple(j for j in running if j.status is JobStatus.CANCELLED),
            abandoned=tuple(j for j in running if j.status is JobStatus.ABANDONED),
            elapsed=loop.time() - began,
        )
        self._report.log(self.shutdown_timeout)
        self._state = _State.CLOSED
        running_executors.pop(self, None)
        self._wake_idle_waiters()
        assert self._closed is not None
        self._closed.set()
        return self._report

    async def __aenter__(self) -> Backburner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Enqueueing.

    @overload
    def enqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def enqueue(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    def enqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Accept ``fn(*args, **kwargs)`` as a job on the default queue; return its handle at once.

        Never blocks and never waits: raises ``QueueFull`` if the queue is full, ``NotRunning``
        if the executor is not running, ``TypeError`` if the call could not bind. Safe from any
        thread. Every argument after ``fn`` goes to ``fn`` unchanged; for options (another
        queue) use ``options(queue=...).enqueue(...)``.
        """
        return self._submit(fn, args, kwargs, None)

    @overload
    async def aenqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    async def aenqueue(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    async def aenqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Like ``enqueue``, but when the queue is full, wait for room instead of raising."""
        return await self._asubmit(fn, args, kwargs, None)

    def options(self, *, queue: str = DEFAULT_QUEUE) -> Enqueuer:
        """Enqueue with options: ``bg.options(queue="mail").enqueue(send, to)``.

        Options live here, apart from ``enqueue``'s arguments, so that no option can take a
        keyword meant for the job's function.
        """
        return Enqueuer(lambda: self, check_queue_name(queue))

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue_name: str | None,
    ) -> Job[Any]:
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, queue_name)
        queue = self._queue_for(queue_name)
        plan = plan_call(fn)
        plan.check(fn, args, kwargs)
        job: Job[Any] = Job(fn, args, kwargs, queue.name, plan.is_async, queue)
        queue.submit(job)
        return job

    async def _asubmit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue_name: str | None,
    ) -> Job[Any]:
        if interceptor:
            return interceptor[-1](self, fn, args, kwargs, queue_name)
        queue = self._queue_for(queue_name)
        if self.loop is not asyncio.get_running_loop():
            # Awaited on another event loop (another thread): wait on ours, from there.
            assert self.loop is not None  # _queue_for() found a queue: open() set it
            future = asyncio.run_coroutine_threadsafe(
                self._asubmit(fn, args, kwargs, queue_name), self.loop
            )
            return await asyncio.wrap_future(future)
        plan = plan_call(fn)
        plan.check(fn, args, kwargs)
        job: Job[Any] = Job(fn, args, kwargs, queue.name, plan.is_async, queue)
        while True:
            try:
                queue.submit(job)
                return job
            except QueueFull:
                await queue.wait_for_room()
                self._queue_for(queue_name)  # raises if the executor began to shut down

    def _queue_for(self, name: str | None) -> JobQueue:
        state = self._state
        if state is not _State.RUNNING and state is not _State.OPEN:
            raise self._not_running()
        try:
            return self._queues[name or DEFAULT_QUEUE]
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

    # Watching.

    def stats(self) -> ExecutorStats:
        """Counters per queue and in total: workers busy and idle, pending, processed, failed.

        Costs O(number of queues). Counts start again at each ``start()``.
        """
        if not self._queues:  # never started: the configured sizes, nothing counted
            return ExecutorStats.of(
                [
                    QueueStats(name, config.workers, 0, config.workers, 0, 0, 0, 0)
                    for name, config in self.queue_configs.items()
                ]
            )
        return ExecutorStats.of([queue.stats() for queue in self._queues.values()])

    def failures(self) -> list[Job[Any]]:
        """The most recent failed jobs (at most ``keep_failed``), oldest first."""
        return list(self._failures)

    @property
    def running(self) -> bool:
        """True between ``start()`` and the beginning of ``aclose()``."""
        return self._state is _State.RUNNING

    async def join(self) -> None:
        """Wait until no job is pending or running (jobs that enqueue jobs included)."""
        await self._wait_idle(None)

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

    # Called by the queues.

    def _job_ended(self) -> None:
        if self._idle_waiters and not any(q.outstanding() for q in self._queues.values()):
            self._wake_idle_waiters()

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _report_failure(self, job: Job[Any], exc: BaseException) -> None:
        logger.error(
            "backburner: job %s failed: %s: %s",
            job.describe(),
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"backburner_job_id": job.id, "backburner_job_name": job.name},
        )
        if self._failures.maxlen:
            self._failures.append(job)
        if self.on_error is not None:
            try:
                self.on_error(job, exc)
            except Exception:
                logger.exception("backburner: on_error hook failed for job %s", job.id)

    def _report_late_end(self, job: Job[Any], error: BaseException | None) -> None:
        outcome = f"raised {type(error).__name__}: {error}" if error else "returned"
        logger.warning(
            "backburner: abandoned job %s %s after it was given up",
            job.describe(),
            outcome,
            extra={"backburner_job_id": job.id},
        )


class Enqueuer:
    """Enqueues with options fixed; made by ``Backburner.options()`` or ``background.options()``."""

    __slots__ = ("_queue", "_target")

    def __init__(self, target: Callable[[], Backburner], queue: str) -> None:
        self._target = target
        self._queue = queue

    @overload
    def enqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def enqueue(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    def enqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """``Backburner.enqueue`` with these options."""
        return self._target()._submit(fn, args, kwargs, self._queue)

    @overload
    async def aenqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    async def aenqueue(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    async def aenqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """``Backburner.aenqueue`` with these options."""
        return await self._target()._asubmit(fn, args, kwargs, self._queue)
