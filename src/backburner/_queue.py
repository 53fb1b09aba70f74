"""One named queue: its waiting jobs, its worker slots, its thread limiter and its counters.

A queue has ``workers`` slots. A job waits in a deque until a slot is free, then runs as its own
task in the context captured when it was enqueued; when it ends, its slot starts the next job.
So there is one task per *running* job and none per waiting job, and nothing a job sets in its
context can leak into the next. Everything but admission runs on the event loop's thread;
admission (``submit``) and ``cancel_job`` may come from any thread and share one lock with the
loop for the few fields they touch.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import inspect
import itertools
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._current import job_var
from ._durations import BOUNDS, empty
from ._errors import JobTimeout, NotRunning, QueueFull
from ._errortext import error_line
from ._job import Job
from ._limitdefs import Snooze
from ._stats import QueueStats
from ._status import JobStatus
from ._threads import ThreadPool

if TYPE_CHECKING:
    from ._limits import Limits
    from ._ports import QueueHost
    from ._scheduler import Scheduler, Timer

__all__ = ["JobQueue"]

logger = logging.getLogger("backburner")

_NO_KWARGS: dict[str, Any] = {}
_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)
_Task = asyncio.Task
_bucket = bisect.bisect_left  # (module globals: for every job that ends)
_BOUNDS = BOUNDS
_FIRST = BOUNDS[0]

# Module constants: on Python 3.10 and 3.11 each `JobStatus.X` costs an enum class lookup.
_PENDING, _RUNNING, _SCHEDULED, _RETRYING = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.SCHEDULED,
    JobStatus.RETRYING,
)
_SUCCEEDED, _FAILED, _DEAD, _CANCELLED, _ABANDONED = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.DEAD,
    JobStatus.CANCELLED,
    JobStatus.ABANDONED,
)
# A due job that finds its queue full waits this many seconds in the scheduler, then retries.
_FULL_RETRY_DELAY = 1.0
_FULL_WARNING_EVERY = 10.0
# Cancelled jobs stay in the deque (removing from its middle is O(n)) and are skipped when
# reached; past this many, and half the deque, the deque is rebuilt without them.
_COMPACT_AFTER = 64


class _ThreadCall:
    """One attempt of a sync job in a thread, from the borrowing of its thread slot to the
    thread's return.

    The limiter's borrower is this object, not the job: a retry may start while the thread of
    an earlier attempt, timed out, still runs, and each holds a token of its own.
    """

    __slots__ = ("attempt", "holds_slot", "returned")

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.returned = False  # the thread has returned (its on_done ran)
        # Its attempt timed out while the thread ran on: the worker slot stays taken, and
        # the thread's return gives it back.
        self.holds_slot = False


class _ThreadAbandoned(Exception):
    """The job's task was cancelled while its sync function went on running in a thread."""

    def __init__(self, call: _ThreadCall) -> None:
        super().__init__()
        self.call = call


class JobQueue:
    """A bounded queue and its pool of ``workers`` slots, bound to one running event loop."""

    remote = False  # its jobs run here, in its slots (see the Queue port)

    # Slots: the fastest attribute access on the per-job path, and past 30 attributes an
    # instance dict loses CPython's shared-key fast path (measured: ~1,400 instructions a job).
    __slots__ = (
        "_busy",
        "_cancelled",
        "_cancelled_in_deque",
        "_dead",
        "_deferred",
        "_direct",
        "_dispatching",
        "_duration_sum",
        "_durations",
        "_durations_first",
        "_effective",
        "_failed",
        "_guarded",
        "_hand_over",
        "_held",
        "_host",
        "_keep",
        "_last_full_warning",
        "_limiter",
        "_limits",
        "_lock",
        "_loop",
        "_loop_thread",
        "_paused",
        "_pending",
        "_processed",
        "_pump_scheduled",
        "_refusal",
        "_retrying",
        "_room_waiters",
        "_running",
        "_scheduled",
        "_scheduler",
        "_started",
        "_taken",
        "_threads",
        "_timed_out",
        "_waited",
        "_waiting",
        "max_pending",
        "name",
        "workers",
    )

    def __init__(
        self,
        name: str,
        workers: int,
        max_pending: int,
        *,
        host: QueueHost,
        loop: asyncio.AbstractEventLoop,
        scheduler: Scheduler,
        guarded: bool = False,
        paused: bool = False,
        refusal: Callable[[], Exception | None] = lambda: None,
        limits: Limits | None = None,
    ) -> None:
        """A queue on ``loop`` (made on its thread), reporting to ``host``.

        ``guarded``: every job takes the guarded path (a journal records each attempt);
        ``paused``: accept jobs but start none until ``resume()``; ``refusal()``: why the
        executor accepts no more jobs now (None while it does), asked by ``asubmit`` each time
        it wakes; ``limits``: the executor's gate that limited jobs pass (``_limits``).
        """
        self._limits = limits
        # `_to_pending` bound once: each limited job's ticket holds it (not a new bound
        # method per job, for the garbage collector to visit while the job is held).
        self._hand_over = self._to_pending
        self.name = name
        self.workers = workers
        self.max_pending = max_pending
        self._host = host
        self._keep = host.keep  # every job that ends is handed to it (one call, O(1))
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._pending: deque[Job[Any]] = deque()
        self._waiting = 0  # live jobs in _pending: cancelled ones no longer count
        self._held = 0  # of the waiting jobs, those a limit holds (not in _pending)
        self._cancelled_in_deque = 0
        self._busy = 0  # jobs holding a slot; guarded by _lock, read by admission
        # Jobs start while fewer than this run: `workers`, unless yielding to requests lowers it.
        self._effective = workers
        # Each running job's task (strong references: no task lost to the GC), here rather
        # than on the job: a waiting job's handle holds no slot for it.
        self._running: dict[Job[Any], asyncio.Task[None]] = {}
        self._dispatching = False
        self._direct = False  # make jobs' tasks directly (see start)
        self._taken = False  # shutdown took the waiting jobs: a late one is not to wait
        self._pump_scheduled = False
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._limiter = anyio.CapacityLimiter(workers)
        self._threads = ThreadPool(name)
        self._scheduler = scheduler
        self._refusal = refusal
        self._scheduled = 0  # jobs waiting in the scheduler for their time, retries included
        self._retrying = 0  # of those, the retries (the dashboard's counts)
        self._timed_out: set[Job[Any]] = set()  # running jobs whose deadline has passed
        self._deferred = 0  # due jobs that found the queue full since the last warning
        self._last_full_warning = -math.inf
        self._processed = self._failed = self._cancelled = self._dead = 0
        # A journaled job records each attempt and its end (its hooks): every job of a
        # journaled executor takes `_run_guarded`, which calls them.
        self._guarded = guarded
        # Paused by Backburner.pause(): accepts jobs, starts none (see pause()).
        self._paused = paused
        # Jobs started, and the seconds they waited in all (for the dashboard's history).
        self._started = 0
        self._waited = 0.0
        # How long the attempts ran: a count per bucket of `BOUNDS` and the seconds in all
        # (the job-duration histogram, read at scrape time). Loop thread.
        self._durations = empty()
        self._durations_first = 0  # the first bucket's count, apart: most jobs land there
        self._duration_sum = 0.0

    # Admission: any thread.

    def submit(self, job: Job[Any]) -> None:
        """Accept ``job`` or raise ``QueueFull``. Never blocks, never waits for the loop."""
        on_loop = threading.get_ident() == self._loop_thread
        # acquire/release rather than `with`: half the cost, on a path every job takes.
        lock = self._lock
        lock.acquire()
        try:
            free = self.workers - self._busy
            # A job that can take a free slot at once is not waiting: only the excess counts.
            # (A job a limit holds can take none: `_full_with_held`.) Fewer waiting jobs than
            # the bound leave room whatever the slots (`free` is never negative): one test.
            waiting = self._waiting
            if waiting >= self.max_pending and (
                waiting - free >= self.max_pending or (self._held and self._full_with_held(free))
            ):
                raise QueueFull(self.name, self.max_pending)
            start_now = (
                on_loop and self._busy < self._effective and self._dispatching and not self._pending
            )
            if start_now:
                job._status = _RUNNING
                self._busy += 1
            else:
                self._waiting += 1
                self._pending.append(job)
        finally:
            lock.release()
        if start_now:
            self._start(job)
            return
        if not self._dispatching:
            return  # started later: start() pumps everything accepted before it
        if on_loop:
            if free > 0:
                self._pump()
            return
        with self._lock:
            if self._pump_scheduled:
                return
            self._pump_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._pump)
        except RuntimeError:  # the loop has closed under us: take the job back, say so
            with self._lock:
                self._pending.remove(job)
                self._waiting -= 1
            raise NotRunning("the executor's event loop has closed; it accepts no jobs") from None

    def submit_at(self, job: Job[Any], when: float, status: JobStatus) -> None:
        """Hold ``job`` until clock time ``when``, then ``submit`` it. Any thread."""
        with self._lock:
            self._scheduled += 1
            self._retrying += status is _RETRYING
            job.hold_until(when, status)
        job.timer = self._scheduler.call_at(when, self._due, job)

    def _due(self, job: Job[Any]) -> None:
        with self._lock:
            debounced = job.options.debounce is not None
            if debounced and (job.run_at or 0.0) > self._scheduler.clock.now():
                return  # pushed back since this entry was made (debounce): its new one will do
            status = job.become_due()  # it waits for a worker from now (see _start)
            if status is None:
                return  # cancelled meanwhile (counted out then)
            self._scheduled -= 1
            self._retrying -= status is _RETRYING
        try:
            if job.options.limits:
                self.submit_limited(job)
            else:
                self.submit(job)
        except QueueFull:
            # A due job counts against its queue's bounds. Nothing is dropped: it waits a
            # little in the scheduler and tries again. One warning per burst, not per job.
            self._deferred += 1
            now = time.monotonic()
            if now - self._last_full_warning >= _FULL_WARNING_EVERY:
                logger.warning(
                    "queue %r is full (max_pending=%d): %d due jobs (the latest "
                    "%s) wait in the schedule and try again every %.0fs",
                    self.name,
                    self.max_pending,
                    self._deferred,
                    job.describe(),
                    _FULL_RETRY_DELAY,
                )
                self._last_full_warning, self._deferred = now, 0
            self.submit_at(job, self._scheduler.clock.now() + _FULL_RETRY_DELAY, status)

    def check(self, job: Job[Any], run_at: float | None) -> None:
        """Nothing to refuse: a local queue runs any callable (checked at enqueue)."""

    # Limited jobs (not the plain path): any thread.

    def submit_limited(self, job: Job[Any], keys: tuple[str | None, ...] | None = None) -> None:
        """``submit`` for a job with limits: it waits for a worker, or is held by a limit.

        A held job counts as waiting here (``max_pending``, ``join()``, shutdown's report)
        but is not in the deque, so it holds no worker and jobs behind it start. ``keys``:
        a new job's keys (enqueue's lean path), which the gate registers as it enters.
        """
        assert self._limits is not None
        lock = self._lock
        lock.acquire()  # (not `with`: see submit. The gate's lock is taken inside this one,
        try:  # never the other way.)
            free = self.workers - self._busy
            waiting = self._waiting  # (the room rule: see submit)
            if waiting >= self.max_pending and (
                waiting - free >= self.max_pending or (self._held and self._full_with_held(free))
            ):
                raise QueueFull(self.name, self.max_pending)
            self._waiting = waiting + 1
            if not self._limits.enter(job, self._hand_over, keys):
                self._held += 1
                return  # held: its limit hands it to _to_pending (or, if a job of this queue
                # freed its key, to that job's _free_slot) when it lets it go
            self._pending.append(job)
            pump = self._dispatching and self._must_pump()
        finally:
            lock.release()
        if pump:
            self._pump()

    def _full_with_held(self, free: int) -> bool:
        # Hold _lock. The room rule when a limit holds some of the waiting jobs: a free slot
        # makes room only for a job that could take it, so each held job counts in full.
        excess = max(self._waiting - self._held - free, 0) + self._held
        return excess >= self.max_pending

    def _to_pending(self, job: Job[Any]) -> None:
        # A limited job its limits let go (already counted in _waiting): to the deque.
        late = pump = False
        lock = self._lock
        lock.acquire()  # (not `with`: see submit)
        try:
            self._held -= 1
            if self._taken:  # let go (on another thread) as shutdown took the waiting jobs
                late = job.try_cancel_waiting() is not None  # (else cancelled meanwhile)
                self._cancelled += late
            else:
                self._pending.append(job)  # (cancelled meanwhile: skipped when reached)
                # (`_must_pump` inlined: most jobs a limit lets go come here.)
                if not self._dispatching:
                    pass
                elif threading.get_ident() == self._loop_thread:
                    pump = self._busy < self.workers
                else:
                    pump = self._must_pump()
        finally:
            lock.release()
        if pump:
            self._pump()
        elif late:
            self._report_late(job)

    def _report_late(self, job: Job[Any]) -> None:
        # Not left in a deque no one reads: cancelled, kept, and named in a log line, since
        # the shutdown report that lists the waiting jobs is already made. Any thread.
        job.finish(_CANCELLED)
        job.context = None  # type: ignore[assignment]
        self._keep(job)
        logger.warning(
            "job %s was let go by its limit as the executor shut down, after the waiting jobs "
            "were taken: cancelled, not run",
            job.describe(attempt=False),
            extra={"backburner_job_id": job.id},
        )

    def _must_pump(self) -> bool:
        # A job was added to the deque (hold _lock): True if this thread (the loop's) must
        # pump now. From another thread the pump is scheduled on the loop instead; on the loop
        # with every slot taken there is nothing to start (a slot freed later pumps).
        if threading.get_ident() == self._loop_thread:
            return self._busy < self.workers
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon_threadsafe(self._pump)
        return False

    def push_back(self, job: Job[Any], args: tuple[Any, ...], kwargs: Any, when: float) -> bool:
        """Debounce: a job still waiting for its time takes these arguments and waits until
        ``when``; False if it no longer waits (it keeps the arguments it had)."""
        with self._lock:
            if job.status is not _SCHEDULED:
                return False
            job.args, job.kwargs = args, kwargs or None
            if job.timer is not None:
                job.timer.cancel()
            job.hold_until(when, _SCHEDULED)  # an entry already firing sees the new time
            job.timer = self._scheduler.call_at(when, self._due, job)
        return True

    def held_jobs(self, limit: int | None = None) -> list[Job[Any]]:
        """The jobs of this queue a limit holds, oldest first (at most ``limit``). Any thread."""
        return [] if self._limits is None else self._limits.held_jobs(self.name, limit)

    async def asubmit(self, job: Job[Any]) -> None:
        """Accept ``job``, waiting for room while the queue is full. Loop thread only.

        Raises ``ShuttingDown`` if shutdown begins while it waits.
        """
        submit = self.submit_limited if job.options.limits else self.submit
        while True:
            try:
                submit(job)
                return
            except QueueFull:
                await self.wait_for_room()
            refused = self._refusal()
            if refused is not None:  # it began to shut down while this waited
                raise refused

    async def wait_for_room(self) -> None:
        """Wait until a waiting job leaves the queue (or the executor stops). Loop thread only."""
        future = self._loop.create_future()
        self._room_waiters.append(future)
        try:
            await future
        finally:
            if not future.done():
                self._room_waiters.remove(future)

    # Dispatch: loop thread only.

    def start(self) -> None:
        """Begin running jobs, those accepted before now first (unless the queue is paused)."""
        if self._paused:
            return  # resume() starts it
        # A job's task is made as the loop's `create_task` would make it, less that method's
        # Python frame (about 2% of what a no-op job costs), while nothing would make it
        # otherwise: the loop's `create_task` is asyncio's or uvloop's own (not a subclass's),
        # with no task factory (one set later is seen when this queue's dispatch next
        # begins) and no debug mode (which trims the task's source traceback); Python 3.11+.
        loop = self._loop
        self._direct = (
            _TASK_TAKES_CONTEXT
            and _stock_create_task(loop)
            and loop.get_task_factory() is None
            and not loop.get_debug()
        )
        self._dispatching = True
        self._taken = False
        self._pump()

    def _pump(self) -> None:
        self._pump_scheduled = False  # before draining: a submit after this schedules anew
        if not self._dispatching:
            return
        started = 0
        while True:
            with self._lock:
                job = self._take_next() if self._busy < self._effective else None
                if job is None:
                    break
                self._busy += 1
            self._start(job)
            started += 1
        if started and self._room_waiters:
            self._wake_room_waiters(started)

    def _take_next(self) -> Job[Any] | None:
        """Pop the next live waiting job, marked running; skip cancelled ones. Hold _lock."""
        pending = self._pending
        while pending:
            job = pending.popleft()
            if job.try_start():
                self._waiting -= 1
                return job
            self._cancelled_in_deque -= 1
        return None

    def _start(self, job: Job[Any]) -> None:
        # A job starts when it takes a slot and its task is made; it runs at the loop's next turn.
        job._started = now = time.time()  # (a friend: no property call)
        self._started += 1  # (these two feed the dashboard's wait-time history)
        # Plain jobs waited from enqueue; others (a run_at) from when they became ready. (A job
        # with no spec of its own has no run_at: read as the friend it is, no call.)
        self._waited += now - (job.ready_at if job._spec.own else job.enqueued_at)
        # Its task, in its own context, named for its function (the same in `_free_slot`).
        if self._direct:  # see `start`
            self._running[job] = _Task(  # type: ignore[call-arg]  # (mypy checks as for 3.10)
                self._run(job), loop=self._loop, name=job._spec.task_name, context=job.context
            )
        else:
            self._running[job] = self._task_for(job)

    def _task_for(self, job: Job[Any]) -> asyncio.Task[None]:
        # A job's task made by the loop's `create_task` (see `start`).
        spec = job._spec
        if _TASK_TAKES_CONTEXT:
            return self._loop.create_task(  # type: ignore[call-arg]
                self._run(job), name=spec.task_name, context=job.context
            )
        # Python 3.10: no context= here; the task takes a copy of the context it starts in.
        return job.context.run(self._loop.create_task, self._run(job), name=spec.task_name)

    async def _run(self, job: Job[Any]) -> None:
        # Every job runs through here. The common case (an async job without a timeout, no
        # journal) takes the fewest steps; the rest take `_run_guarded`. (The job's context
        # already names its executor for `background`, bound at enqueue.)
        if not self._direct and job not in self._running:
            # Started eagerly, by a task factory such as Python 3.12's `eager_task_factory`:
            # run at once, inside the call that makes the task, before its task is recorded
            # and with the slot's bookkeeping half done. Step aside once, and run from the
            # loop as any job does (a chain of jobs ending at once would otherwise recurse).
            # Its task cancelled meanwhile ends it as one cancelled before its first step:
            # whoever cancels it got it from `_cancel_task` or `task_of`, which see to that.
            await asyncio.sleep(0)
        attempt = job.attempt = job.attempt + 1
        # For log records, here and in the tasks and threads this starts. Not reset at the
        # end (a call per job saved): the task holds this context and the job its task, but
        # a job that ends lets go of both (below), and a retry's next attempt sets it anew.
        # An async job's first attempt sets the job alone (read as attempt 1: no tuple on the
        # common path); a later one says which it is, as a task the first left running may
        # log on while it runs (see _current.py).
        limits = None
        spec = job._spec  # (a friend: its fields read without a property call)
        if self._guarded or not spec.is_async or spec.options.guarded:
            # (`job.hooks` read only if the job has a spec of its own, with its rare fields.)
            hooks = spec.own and job.hooks is not None
            if not spec.is_async or spec.options.timeout is not None or hooks:
                job_var.set((job, attempt))  # (a sync job's thread may outlive its attempt)
                await self._run_guarded(job)
                return
            # A limited async job (the only other kind that comes here; plain jobs never do):
            # its limits hear of its start and its end, nothing more; the rest is the plain
            # path's. Here, not in `_run_guarded`: a coroutine level costs at every step.
            limits = self._limits
            assert limits is not None
            if limits.rated:  # its rate windows count it from its start
                limits.started(job)
        job_var.set(job if attempt == 1 else (job, attempt))
        now = None
        try:
            kwargs = job.kwargs
            result = await (spec.fn(*job.args, **kwargs) if kwargs else spec.fn(*job.args))
        except asyncio.CancelledError:
            self._end(job, _CANCELLED)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see _failed_attempt
            self._end(job, _FAILED, exc=exc)
        else:
            if job._status is _RUNNING:  # (a friend: no property call on every job's path)
                self._processed += 1
                job.succeed(result)
                self._keep(job)
                now = job._finished  # the successor starts now: one clock read saved
                ran = now - job._started  # type: ignore[operator]  # (both set by now)
                # (Most jobs end within the first bound: one comparison and a counter.)
                if ran <= _FIRST:
                    self._durations_first += 1
                else:
                    self._durations[_bucket(_BOUNDS, ran)] += 1
                self._duration_sum += ran
            else:
                self._host.late_end(job, None)
        finally:
            self._running.pop(job, None)  # (and its task, ending now)
            if now is not None or job.done():  # (it succeeded if `now` is set)
                # Let its context values go: a finished job may be kept a while for lookup,
                # and must not hold them meanwhile.
                job.context = None  # type: ignore[assignment]
            if limits is None:
                self._free_slot(now)
            else:  # its tokens first: its key's next job may start next (the job its limit
                # lets go to this queue joins the deque in the slot's own lock pass)
                done = now is not None or job.done()
                self._free_slot(now, limits.release(job, done, self._hand_over))

    async def _run_guarded(self, job: Job[Any]) -> None:
        # `_run` for sync jobs (in a thread), jobs with a timeout, journaled jobs (and limited
        # jobs with any of these: a limited async job alone is `_run`'s).
        hooks = job.hooks  # a journaled job's start goes to disk first; a traced job's span opens
        spec = job._spec  # (a friend: its fields read without a property call)
        limited = bool(spec.options.limits)
        timeout = spec.options.timeout
        deadline = None if timeout is None else self._arm_timeout(job, timeout)
        left_running: _ThreadCall | None = None  # an attempt's thread given up on
        now = None  # when it succeeded: when its successor starts (one clock read saved)
        if limited:  # its rate windows count it from its start
            assert self._limits is not None
            self._limits.started(job)
        try:
            # (In the try: a hook that raises fails the attempt, and its slot is given back.)
            began = None if hooks is None else hooks.began(job)
            if began is not None:
                await began  # committed before the job's code runs: a crash in it counts
            if spec.is_async:
                kwargs = job.kwargs
                result = await (spec.fn(*job.args, **kwargs) if kwargs else spec.fn(*job.args))
            else:
                result = await self._call_in_thread(job)
                if inspect.iscoroutine(result):  # a plain wrapper that returns a coroutine
                    result = await result
        except (asyncio.CancelledError, _ThreadAbandoned) as exc:
            left_running = exc.call if isinstance(exc, _ThreadAbandoned) else None
            if job in self._timed_out:
                self._end(job, _FAILED, exc=JobTimeout(_timeout_message(job)))
            else:
                self._end(job, _CANCELLED if left_running is None else _ABANDONED)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see _failed_attempt
            self._end(job, _FAILED, exc=exc)
        else:
            if self._succeeded(job, result):
                now = job._finished
        finally:
            self._running.pop(job, None)  # (and its task, ending now)
            if job.done():
                # Let its context values go: a finished job may be kept a while for lookup,
                # and must not hold them meanwhile.
                job.context = None  # type: ignore[assignment]
            if limited:  # its tokens back first: a job of its key may start next
                # (A timed-out sync job's too, though its thread runs on: its attempt has
                # ended, and its retry must find its tokens free.)
                assert self._limits is not None
                self._limits.release(job)
            if deadline is not None:
                deadline.cancel()
                timed_out = job in self._timed_out
                self._timed_out.discard(job)
                if timed_out and left_running is not None and not left_running.returned:
                    # A timed-out sync job's thread runs on: its slot stays taken until the
                    # thread returns (its on_done frees it). One slot per such thread.
                    left_running.holds_slot = True
                    return  # noqa: B012 - nothing to re-raise: every exception was handled
            self._free_slot(now)

    def _succeeded(self, job: Job[Any], result: Any) -> bool:
        # True if the job succeeded now; False if it was given up on before (its late end).
        if job.status is _RUNNING:
            self._processed += 1
            job.succeed(result)
            self._keep(job)
            self._ran(job, job.finished_at)
            return True
        self._host.late_end(job, None)  # abandoned at shutdown: its end changes nothing
        return False

    def _arm_timeout(self, job: Job[Any], timeout: float) -> Timer:
        return self._scheduler.call_at(self._scheduler.clock.now() + timeout, self._expire, job)

    def _failed_attempt(self, job: Job[Any], exc: BaseException) -> None:
        # Whatever a job raises fails that job alone: SystemExit, KeyboardInterrupt and other
        # BaseExceptions too (argparse or a library's sys.exit() inside a job must not end
        # the server, as they would if re-raised from a task). Only cancellation is no failure.
        self._ran(job, time.time())  # an attempt that ran, whether it is retried or not
        if isinstance(exc, Snooze):
            self._snooze(job, exc)
            return
        self._processed += 1
        self._failed += 1
        options = job.options
        # While draining, a retry still goes to the scheduler: if it is not due before the
        # scheduler closes, shutdown reports it with the other scheduled jobs.
        if job.attempt <= options.retries and isinstance(exc, options.retry_on):
            delay = options.retry_delay(job.attempt)
            job.keep_error(exc)  # the last error, visible while the job waits
            logger.warning(
                "job %s failed (attempt %d of %d): %s; retrying in %.2fs",
                job.describe(attempt=False),
                job.attempt,
                options.retries + 1,
                error_line(exc),
                delay,
                extra={"backburner_job_id": job.id},
            )
            self.submit_at(job, self._scheduler.clock.now() + delay, _RETRYING)
            if job.hooks is not None:
                job.hooks.will_retry(job)
            return
        dead = options.retries > 0
        if dead:
            self._dead += 1
        job.finish(_DEAD if dead else _FAILED, exc=exc)
        self._keep(job)
        self._host.job_failed(job, exc)

    def _snooze(self, job: Job[Any], snooze: Snooze) -> None:
        # Not a failure: the attempt is not counted, and the job waits as a scheduled one.
        # Its next run has the same number, but not this run's progress (as a retry has not).
        job.attempt -= 1
        job.forget_progress()
        when = self._scheduler.clock.now() + snooze.seconds
        if snooze.limit is not None and self._limits is not None:
            self._limits.back_off(snooze.limit, when)  # before this job's tokens come back
        logger.info(
            "job %s %s", job.describe(attempt=False), snooze, extra={"backburner_job_id": job.id}
        )
        self.submit_at(job, when, _SCHEDULED)
        if job.hooks is not None:
            job.hooks.will_retry(job)

    def _expire(self, job: Job[Any]) -> None:
        task = self._running.get(job)
        if job.status is _RUNNING and task is not None:
            self._timed_out.add(job)
            self._cancel_task(job, task)

    def _end(
        self, job: Job[Any], status: JobStatus, result: Any = None, exc: BaseException | None = None
    ) -> None:
        if job.status is not _RUNNING:  # abandoned at shutdown: its end changes nothing
            if status is _SUCCEEDED or status is _FAILED:
                self._host.late_end(job, exc)
            return
        if status is _FAILED and exc is not None:
            self._failed_attempt(job, exc)  # retried, or failed for good and reported
            return
        if status is _CANCELLED or status is _ABANDONED:
            self._cancelled += 1
        else:
            self._processed += 1
        job.finish(status, result, exc)
        self._keep(job)
        self._ran(job, job.finished_at)

    def _ran(self, job: Job[Any], ended: float | None) -> None:
        # An attempt ended: into the job-duration histogram (`_run` inlines this).
        started = job.started_at
        if started is not None and ended is not None:
            ran = ended - started
            self._durations[_bucket(_BOUNDS, ran)] += 1
            self._duration_sum += ran

    async def _call_in_thread(self, job: Job[Any]) -> Any:
        # The limiter token is held until the thread really returns, even if the job is
        # abandoned before then: a thread still busy is a slot still taken. It is borrowed
        # per attempt (see _ThreadCall).
        limiter = self._limiter
        call = _ThreadCall(job.attempt)
        try:
            limiter.acquire_on_behalf_of_nowait(call)
        except anyio.WouldBlock:
            await limiter.acquire_on_behalf_of(call)
        # The outcome comes back as a value, and an error is raised below, not by the future:
        # asyncio swaps a GeneratorExit raised through a future for a new one, without the
        # job's traceback.
        future: asyncio.Future[tuple[Any, BaseException | None]] = self._loop.create_future()

        def on_done(result: Any, error: BaseException | None) -> None:
            call.returned = True
            limiter.release_on_behalf_of(call)
            if future.cancelled():
                if call.holds_slot:  # a timed-out attempt's slot, held for its thread
                    self._free_slot()
                self._host.late_end(job, error, call.attempt)
            else:
                future.set_result((result, error))

        context = contextvars.copy_context()  # a thread cannot enter the task's own context
        fn = job._spec.fn  # (a friend: no property call)
        self._threads.run(self._loop, context, fn, job.args, job.kwargs or _NO_KWARGS, on_done)
        try:
            result, error = await future
        except asyncio.CancelledError:
            if future.cancelled():
                raise _ThreadAbandoned(call) from None
            raise
        if error is not None:
            raise error
        return result

    def _free_slot(self, now: float | None = None, admitted: Job[Any] | None = None) -> None:
        # The slot goes straight to the next waiting job, under one lock. (`_take_next` and
        # `_start` inlined: every job that finishes comes here.) `now`, if the caller read the
        # clock, is when the successor starts: one clock read per job saved. `admitted`: a
        # job the ending job's limit let go (`_to_pending` inlined), behind the waiting ones.
        successor = None
        lock = self._lock
        lock.acquire()  # (not `with`: see submit)
        try:
            if admitted is not None:
                self._pending.append(admitted)
                self._held -= 1
            if self._dispatching and self._busy <= self._effective:  # (its own slot counts in busy)
                pending = self._pending
                while pending:
                    job = pending.popleft()
                    if job._status is _PENDING:  # job.try_start(), inlined (a friend)
                        job._status = _RUNNING
                        self._waiting -= 1
                        successor = job
                        break
                    self._cancelled_in_deque -= 1
            if successor is None:
                self._busy -= 1
        finally:
            lock.release()
        if successor is not None:
            if now is None:
                now = time.time()
            successor._started = now
            self._started += 1
            ready = successor.ready_at if successor._spec.own else successor.enqueued_at
            self._waited += now - ready
            if self._direct:  # (as in `_start`)
                self._running[successor] = _Task(  # type: ignore[call-arg]
                    self._run(successor),
                    loop=self._loop,
                    name=successor._spec.task_name,
                    context=successor.context,
                )
            else:
                self._running[successor] = self._task_for(successor)
            if self._room_waiters:
                self._wake_room_waiters(1)
        else:
            self._host.job_ended()

    def set_effective_workers(self, count: int) -> None:
        """Start jobs only while fewer than ``count`` (at most ``workers``) run. Loop thread.

        Yielding to requests lowers it while requests are pressed: running jobs go on, and
        the slot of one that ends is not handed on while the queue is over ``count``.
        """
        raised = count > self._effective
        self._effective = min(count, self.workers)
        if raised:
            self._pump()

    def release_unique(self, job: Job[Any]) -> None:
        """Free the key of a unique job that ended."""
        self._host.release_unique(job)

    def held_by(self, job: Job[Any]) -> str | None:
        """The name of the limit holding ``job``, if one does. Any thread."""
        return None if self._limits is None else self._limits.held_by(job)

    # Cancellation: any thread.

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel a pending job, or ask a running async job to stop (see ``Job.cancel``)."""
        if job.status.held and self._limits is not None and self._limits.cancel_held(job):
            with self._lock:
                self._waiting -= 1
                self._held -= 1
                self._cancelled += 1
            job.finish(_CANCELLED)
            self._keep(job)  # lookup() finds it cancelled, like any job that ends
            self._call_soon(self._after_pending_cancel)
            return True
        with self._lock:
            status = job.try_cancel_waiting()
            if status is _PENDING:
                self._waiting -= 1
                self._cancelled_in_deque += 1
                self._cancelled += 1
            elif status is not None:  # scheduled or retrying
                self._scheduled -= 1
                self._retrying -= status is _RETRYING
                self._cancelled += 1
            elif job.status is not _RUNNING or not job.is_async:
                return False  # finished, or a thread we cannot interrupt
        if status is _SCHEDULED or status is _RETRYING:
            if job.timer is not None:
                job.timer.cancel()
            job.finish(_CANCELLED)
            if job.options.limits:  # its ticket goes (and its tokens, if its attempt's end
                assert self._limits is not None  # has not given them back yet: a Snooze)
                self._limits.release(job)
            self._keep(job)
        elif status is _PENDING:
            if job.options.limits:  # it held its limits' tokens while it waited
                assert self._limits is not None
                self._limits.release(job)
            job.finish(_CANCELLED)
            self._keep(job)
            self._call_soon(self._after_pending_cancel)
        else:
            self._call_soon(self._cancel_running, job)
        return True

    def _cancel_running(self, job: Job[Any]) -> None:
        task = self._running.get(job)
        if task is not None:
            self._cancel_task(job, task)

    def _cancel_task(self, job: Job[Any], task: asyncio.Task[None]) -> None:
        task.cancel()
        # A task cancelled before its first step never runs `_run`, whose `finally` ends the
        # job and frees its slot (a job started by `submit` and cancelled at once, say): this
        # callback does it then, and nothing if `_run` ran.
        task.add_done_callback(functools.partial(self._cancelled_before_start, job))

    def _cancelled_before_start(self, job: Job[Any], task: asyncio.Task[None]) -> None:
        if job.status is not _RUNNING or self._running.get(job) is not task:
            return
        self._end(job, _CANCELLED)
        del self._running[job]
        job.context = None  # type: ignore[assignment]
        if job.options.limits:  # its tokens were taken: `_run_guarded` never gave them back
            assert self._limits is not None
            self._limits.release(job)
        self._free_slot()

    def _after_pending_cancel(self) -> None:
        with self._lock:
            if self._cancelled_in_deque > _COMPACT_AFTER and self._cancelled_in_deque * 2 > len(
                self._pending
            ):
                self._pending = deque(j for j in self._pending if j.status is _PENDING)
                self._cancelled_in_deque = 0
        self._wake_room_waiters(1)
        self._host.job_ended()

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _wake_room_waiters(self, count: int) -> None:
        while count and self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    # Shutdown: loop thread only.

    def stop_accepting_waiters(self) -> None:
        """Wake every ``aenqueue`` waiting for room, so it sees that the executor is stopping."""
        self._wake_room_waiters(len(self._room_waiters))

    def take_pending(self) -> list[Job[Any]]:
        """Stop dispatching; remove and return every waiting job, marked cancelled."""
        self._dispatching = False  # an abandoned job that ends later must not start another
        held = [] if self._limits is None else self._limits.take_held(self.name)
        with self._lock:
            self._taken = True
            jobs = [job for job in self._pending if job.try_cancel_waiting() is not None]
            jobs += held
            self._pending.clear()
            self._cancelled_in_deque = 0
            self._waiting = 0
            self._held -= len(held)
            self._cancelled += len(jobs)
        limits = self._limits
        for job in jobs:
            job.finish(_CANCELLED)
            job.context = None  # type: ignore[assignment]
            if limits is not None and job.options.limits:
                # A job let through its limits holds their tokens while it waits: they go
                # back (a held one's ticket went with `take_held`; nothing is let go now).
                limits.release(job, True)
            self._keep(job)
        return jobs

    def drop_scheduled(self, jobs: list[Job[Any]]) -> None:
        """Mark ``jobs`` (this queue's, taken from a closed scheduler) cancelled."""
        dropped = []
        with self._lock:
            for job in jobs:
                status = job.status
                if (status is _SCHEDULED or status is _RETRYING) and job.try_cancel_waiting():
                    self._retrying -= status is _RETRYING
                    self._scheduled -= 1
                    self._cancelled += 1
                    dropped.append(job)
        for job in dropped:  # (a running job's timeout entry is no waiting job: left alone)
            job.finish(_CANCELLED, exc=job.exception())
            self._keep(job)

    def task_of(self, job: Job[Any]) -> asyncio.Task[None] | None:
        """The task running ``job`` here, if it runs (or was abandoned running) now."""
        task = self._running.get(job)
        if task is not None and threading.get_ident() == self._loop_thread:
            # Handed out (`Job.task`): its holder may cancel it before its first step, which
            # would never run `_run`, whose end ends the job and frees its slot. This does
            # it then, and nothing if `_run` ran. (Not from another thread, the lag
            # monitor's: a task's callbacks are the loop's.)
            task.add_done_callback(functools.partial(self._cancelled_before_start, job))
        return task

    def running_jobs(self) -> list[Job[Any]]:
        """The jobs holding a slot now."""
        return list(self._running)

    def cancel_running(self) -> list[asyncio.Task[None]]:
        """Cancel every running async job; return every running job's task, to wait for.

        Sync jobs cannot be interrupted: their tasks are left alone, so that a thread that
        returns within the grace still counts as a finished job.
        """
        tasks = []
        for job, task in self._running.items():
            tasks.append(task)
            if job.is_async:
                self._cancel_task(job, task)
        return tasks

    def abandon_running(self) -> list[Job[Any]]:
        """Mark the jobs still running at the deadline abandoned, and return them.

        A sync job's task stops waiting for its thread. An async job that ignored its
        cancellation is taken out of asyncio's registry of tasks: ``asyncio.run`` (after
        SIGINT, say) would otherwise wait for it forever while cleaning up. Either way the
        job stays referenced here, in ``_running``, and may yet run on.
        """
        running = [(job, task) for job, task in self._running.items() if not job.done()]
        for job, task in running:
            job.finish(_ABANDONED)
            self._keep(job)
            self._ran(job, job.finished_at)
            if job.is_async:
                _forget_task(task)
            else:
                task.cancel()
        jobs = [job for job, _ in running]
        self._cancelled += len(jobs)
        return jobs

    def outstanding(self) -> int:
        """Jobs waiting or running: what ``join()`` waits for (a paused queue's wait on)."""
        return self._busy if self._paused else self._waiting + self._busy

    def stats(self) -> QueueStats:
        """A snapshot of this queue's counters."""
        busy = self._busy
        return QueueStats(
            name=self.name,
            workers=self.workers,
            busy=busy,
            idle=max(0, self.workers - busy),
            pending=self._waiting,
            scheduled=self._scheduled,
            processed=self._processed,
            failed=self._failed,
            cancelled=self._cancelled,
            dead=self._dead,
            paused=self._paused,
            held=self._held,
        )

    # Steering and inspection (the dashboard's needs): loop thread unless said otherwise.

    def pause(self) -> None:
        """Start no more jobs; running ones finish. ``submit`` still accepts jobs."""
        self._paused = True
        self._dispatching = False  # the gate submit, _pump and _free_slot already read
        self._host.job_ended()  # a join() waiting only for this queue's waiting jobs ends

    def resume(self, dispatch: bool) -> None:
        """Undo ``pause()``; with ``dispatch``, start the waiting jobs now."""
        self._paused = False
        if dispatch:
            self.start()

    def timed_counts(self) -> tuple[int, int]:
        """Jobs waiting here for their time: (scheduled and retrying, of them retrying)."""
        return self._scheduled, self._retrying

    def durations(self) -> tuple[list[int], float]:
        """How long this queue's attempts ran: a count per bucket of ``BOUNDS`` (the last:
        longer than every bound) and their seconds in all. Any thread."""
        counts = list(self._durations)
        counts[0] += self._durations_first
        return counts, self._duration_sum

    def wait_totals(self) -> tuple[int, float]:
        """Jobs started since ``start()``, and the seconds they waited for a worker in all."""
        return self._started, self._waited

    def problem(self) -> None:
        """None: no worker here can die (each job is a task of its own, a slot only a count)."""
        return None

    def pending_jobs(self, offset: int = 0, limit: int | None = None) -> list[Job[Any]]:
        """Waiting jobs in the order they will start, cancelled ones skipped. Any thread.

        O(offset + limit) under the admission lock: callers bound both.
        """
        with self._lock:
            live = (job for job in self._pending if job.status is _PENDING)
            stop = None if limit is None else offset + limit
            return list(itertools.islice(live, offset, stop))

    def waiting_jobs(self) -> list[Job[Any]]:
        """A copy of the deque of waiting jobs, cancelled ones included. Any thread.

        A C-speed copy: the admission lock is held briefly, whatever the length.
        """
        with self._lock:
            pending = list(self._pending)
        return pending + self.held_jobs()


def _stock_create_task(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop.create_task`` is asyncio's own or uvloop's, not a subclass's override."""
    method = getattr(type(loop), "create_task", None)
    if method is asyncio.BaseEventLoop.create_task:
        return True
    uvloop = sys.modules.get("uvloop")  # (imported already if this loop is one of its)
    stock = getattr(getattr(uvloop, "Loop", None), "create_task", None)
    return stock is not None and method is stock


def _forget_task(task: asyncio.Task[None]) -> None:
    """Hide ``task`` from ``asyncio.all_tasks()``, so that loop cleanup does not wait for it.

    There is no public way to do this; ``_unregister_task`` is in CPython 3.10 to 3.13.
    Without it, an async job that swallows every cancellation keeps ``asyncio.run`` from
    returning, and the process from exiting, after shutdown already reported it abandoned.
    """
    unregister = getattr(asyncio.tasks, "_unregister_task", None)
    if unregister is not None:
        unregister(task)


def _timeout_message(job: Job[Any]) -> str:
    kind = "cancelled" if job.is_async else "left running in its thread"
    return (
        f"job {job.id} ({job.name}) ran past its timeout of {job.options.timeout:g}s and was {kind}"
    )
