"""Helpers for testing code that enqueues jobs.

Three ways to test an app that uses backburner, from the most faithful to the most isolated:

* ``await join()`` (or ``await bg.join()``): jobs run for real on the executor; wait for them
  all to end, then assert on their effects. From any event loop: the wait runs on the
  executor's.
* ``with inline():``: every ``enqueue`` in the process runs its job to the end before it
  returns, like SuckerPunch's ``sucker_punch/testing/inline``. No executor needs to run.
* ``with fake() as jobs:``: every ``enqueue`` records its job and runs nothing; assert on
  ``jobs``, then ``jobs.run_all()`` if you want them run after all.

The two modes are process-wide (a ``TestClient`` runs the app in a thread of its own, which a
context variable would not reach) and nest: the innermost wins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, overload

from ._callables import plan_call
from ._context import interceptor, name_executor
from ._current import job_var
from ._errortext import error_line, log_failure
from ._executor import Backburner
from ._job import Job
from ._options import options_of
from ._outcomes import call_on_error
from ._proxy import current_executor
from ._status import JobStatus

__all__ = ["ManualClock", "RecordedJobs", "fake", "inline", "join"]

_WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED)

logger = logging.getLogger("backburner")


async def join(executor: Backburner | None = None) -> None:
    """Wait until ``executor`` (by default the current one) has no pending or running job.

    Await it on any event loop, in any thread (an async test's, while a ``TestClient`` runs
    the app on a loop in its own thread): the wait runs on the executor's loop. Raises
    ``RuntimeError`` at once if that loop is not running while jobs are left.
    """
    await (executor or current_executor()).join()


@contextlib.contextmanager
def inline(*, raise_errors: bool = True) -> Iterator[list[Job[Any]]]:
    """Run every job at its ``enqueue``, before ``enqueue`` returns; yield the jobs run.

    Sync jobs run in the caller's thread. Async jobs run on a private event loop: in the
    caller's thread if no loop runs there, else in a helper thread while the caller waits; so
    an async job must not use objects tied to the app's own loop (use ``join()`` for those).
    Arguments are checked as usual. With ``raise_errors`` (the default) a job's exception
    propagates out of ``enqueue``, so a failing job fails the test; either way it is logged
    and kept on the job.
    """
    ran: list[Job[Any]] = []

    def run_now(
        executor: Backburner | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
        run_at: float | None,
    ) -> Job[Any]:
        job = _make_job(executor, fn, args, kwargs, changes, owner=None)
        ran.append(job)
        _run_inline(job, executor, raise_errors)
        return job

    with _intercepting(run_now):
        yield ran


class RecordedJobs(Sequence[Job[Any]]):
    """The jobs ``fake()`` caught, in the order they were enqueued.

    Scheduled jobs (``enqueue_in``/``enqueue_at``) are recorded with ``status`` scheduled and
    their ``run_at``; ``run_all()`` runs them too, without waiting.
    """

    def __init__(
        self,
        jobs: list[Job[Any]] | None = None,
        executors: dict[int, Backburner | None] | None = None,
    ) -> None:
        """A view of what a ``fake()`` records into ``jobs`` (and each job's executor)."""
        self._jobs = [] if jobs is None else jobs
        self._executors = {} if executors is None else executors

    @overload
    def __getitem__(self, index: int) -> Job[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Job[Any]]: ...
    def __getitem__(self, index: int | slice) -> Job[Any] | Sequence[Job[Any]]:
        return self._jobs[index]

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"<RecordedJobs {self._jobs!r}>"

    def of(self, fn: Callable[..., Any]) -> list[Job[Any]]:
        """The recorded jobs that call ``fn``."""
        return [job for job in self._jobs if job.fn is fn]

    def pending(self) -> list[Job[Any]]:
        """The recorded jobs that have not run (nor been cancelled) yet."""
        return [job for job in self._jobs if job.status in _WAITING]

    def run_all(self, *, raise_errors: bool = True) -> list[Job[Any]]:
        """Run every pending recorded job inline, in order, and the jobs those enqueue.

        Returns the jobs run. See ``inline()`` for where async jobs run.
        """
        ran: list[Job[Any]] = []
        while pending := self.pending():
            for job in pending:
                if job.status in _WAITING:
                    ran.append(job)
                    _run_inline(job, self._executors.get(id(job)), raise_errors)
        return ran

    def clear(self) -> None:
        """Forget every recorded job."""
        self._jobs.clear()
        self._executors.clear()


class _FakeOwner:
    """Lets ``job.cancel()`` work on a recorded job."""

    def cancel_job(self, job: Job[Any]) -> bool:
        if job.try_cancel_waiting() is None:
            return False
        job.finish(JobStatus.CANCELLED)
        return True

    def release_unique(self, job: Job[Any]) -> None:
        pass  # recorded jobs hold no keys

    def held_by(self, job: Job[Any]) -> str | None:
        return None  # no limit holds a recorded job

    def task_of(self, job: Job[Any]) -> asyncio.Task[None] | None:
        return None  # a recorded job runs inline, in no task of its own


@contextlib.contextmanager
def fake() -> Iterator[RecordedJobs]:
    """Record every enqueued job instead of running it; yield the record.

    Arguments are checked as usual, so a call that would fail for real fails here too.
    The jobs stay pending until ``run_all()`` or ``cancel()``.
    """
    jobs: list[Job[Any]] = []
    executors: dict[int, Backburner | None] = {}
    recorded = RecordedJobs(jobs, executors)
    owner = _FakeOwner()

    def record(
        executor: Backburner | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
        run_at: float | None,
    ) -> Job[Any]:
        job = _make_job(executor, fn, args, kwargs, changes, owner=owner)
        if run_at is not None:
            job.hold_until(run_at, JobStatus.SCHEDULED)
        jobs.append(job)
        executors[id(job)] = executor
        return job

    with _intercepting(record):
        yield recorded


@contextlib.contextmanager
def _intercepting(handler: Any) -> Iterator[None]:
    interceptor.append(handler)
    try:
        yield
    finally:
        interceptor.remove(handler)


def _make_job(
    executor: Backburner | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    changes: dict[str, Any] | None,
    owner: Any,
) -> Job[Any]:
    options = options_of(fn)
    if changes:
        options = options.replace(**changes)
    if executor is not None and options.queue not in executor.queue_configs:
        raise ValueError(
            f"no queue named {options.queue!r}; this executor has {sorted(executor.queue_configs)}"
        )
    plan = plan_call(fn)
    plan.check(fn, args, kwargs)
    key = options.key_for(args, kwargs)
    return Job(plan.spec_for(fn, options, options.queue), args, kwargs, owner, key)


def _run_inline(job: Job[Any], executor: Backburner | None, raise_errors: bool) -> None:
    context = job.context
    if executor is not None:
        context.run(name_executor, executor, executor.enqueue)
    job.become_due()  # a recorded scheduled job runs now, as any other
    job.try_start()
    job.attempt += 1
    context.run(job_var.set, (job, job.attempt))  # current_job() and log records find it
    job.started_at = time.time()
    try:
        result = context.run(_call, job)
    except Exception as exc:
        job.finish(JobStatus.FAILED, exc=exc)
        log_failure(
            logging.ERROR,
            "job %s failed (run inline): %s",
            (job.describe(attempt=False), error_line(exc)),
            exc,
            {"backburner_job_id": job.id, "backburner_job_name": job.name},
        )
        call_on_error(None if executor is None else executor.on_error, job, exc)
        if raise_errors:
            raise
    else:
        job.succeed(result)


def _call(job: Job[Any]) -> Any:
    result = job.fn(*job.args, **(job.kwargs or {}))
    if not asyncio.iscoroutine(result):
        return result
    if _running_loop() is None:
        # Outside the `except` that found no loop: a job's error raised in there would show
        # "RuntimeError: no running event loop" first, as the error it happened "during".
        return asyncio.run(result)
    # This thread runs a loop we must not block on from inside: use a helper thread's loop,
    # in a copy of the job's context (the job's own context is entered here, in this thread).
    context = contextvars.copy_context()
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(context.run(asyncio.run, result))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="backburner-inline")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ManualClock:
    """A clock that moves only when told: pass it as ``Backburner(clock=ManualClock())``.

    Delays, periodic ticks, retry backoffs and timeouts then happen when a test calls
    ``advance()``, at once and in order, instead of after real waiting. ``advance()`` may be
    called from any thread: each due call runs on its executor's event loop thread (handed
    there, and waited for, when that loop runs in another thread, as a ``TestClient``'s does).
    """

    def __init__(self, start: float | datetime = 1_767_225_600.0) -> None:  # 2026-01-01 UTC
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._calls: list[tuple[float, int, _ManualTimer]] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()  # call_at runs on the executor's thread, advance anywhere

    def now(self) -> float:
        """The clock's time, in seconds since the epoch."""
        return self._now

    def call_at(
        self, when: float, callback: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> _ManualTimer:
        """Remember ``callback`` until ``advance()`` reaches ``when``; it runs on ``loop``."""
        timer = _ManualTimer(callback, loop)
        with self._lock:
            heapq.heappush(self._calls, (when, next(self._sequence), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, making every call due by then, in time order.

        Returns once every due call has run (a call may schedule more: those due by then run
        too). Blocks this thread meanwhile if the calls run on another thread's loop.
        """
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        target = self._now + seconds
        while True:
            with self._lock:
                if not self._calls or self._calls[0][0] > target:
                    break
                when, _, timer = heapq.heappop(self._calls)
            self._now = max(self._now, when)
            if not timer.cancelled:
                _call_on_its_loop(timer)
        self._now = target

    def __repr__(self) -> str:
        return f"ManualClock({datetime.fromtimestamp(self._now, timezone.utc).isoformat()})"


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "loop")

    def __init__(self, callback: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self.callback = callback
        self.loop = loop
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _call_on_its_loop(timer: _ManualTimer) -> None:
    """Run ``timer.callback()`` on its loop's thread, as ``Clock.call_at`` promises."""
    loop = timer.loop
    if not loop.is_running() or _running_loop() is loop:
        timer.callback()  # this thread is the loop's, or no thread runs it now
        return
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def call() -> None:
        try:
            if not timer.cancelled:  # cancelled on its loop after advance() took it
                timer.callback()
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    loop.call_soon_threadsafe(call)
    done.result()
