"""``Job``: the handle ``enqueue()`` returns, and the record a worker fills in."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import os
import reprlib
import secrets
import threading
import time
from collections.abc import Callable, Generator
from contextvars import copy_context
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ._errors import JobCancelled
from ._options import JobOptions
from ._progress import Progress, ProgressCell
from ._status import JobStatus

__all__ = ["ArgRepr", "Job", "JobSpec", "long_int_text"]

_PENDING, _RUNNING, _SUCCEEDED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED
_SCHEDULED, _RETRYING, _CANCELLED = JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.CANCELLED
_BLOCKED, _THROTTLED = JobStatus.BLOCKED, JobStatus.THROTTLED
_now = time.time  # (module globals: one lookup less each, for every job made)

# Enqueue times are kept to the millisecond: the jobs accepted within one millisecond share
# one float (see `Job.enqueued_at`). `_stamp` is the last one made (a race between threads
# only makes a float more). A clock stepped back makes a new one: a stamp from before the
# step would be later than the jobs' starts.
_STAMP_RESOLUTION = 0.001
_stamp = 0.0

T = TypeVar("T")

# Job ids are "<process tag>-<sequence>": unique within the process, and (the tag being random)
# across the processes of one deployment, cheap to make, and short enough to read in a log line.
# The number is drawn when the id is first asked for, under this lock (two threads may ask at
# once): most jobs are never asked, and a waiting job then holds no number (32 bytes an int).
_PROCESS_TAG = f"{os.getpid():x}{secrets.token_hex(2)}"
_sequence = itertools.count(1)
_sequence_lock = threading.Lock()
_drawn = 0  # the last number drawn (under the lock): a greater one names no job yet


def _retag() -> None:
    """In a child forked after import (gunicorn ``--preload``): a tag of its own. Else its
    ids are its parent's and its siblings', and collide in the journal they share."""
    global _PROCESS_TAG, _sequence_lock
    _PROCESS_TAG = f"{os.getpid():x}{secrets.token_hex(2)}"
    _sequence_lock = threading.Lock()  # (another thread may have held it at the fork)


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_retag)


class ArgRepr(reprlib.Repr):
    """reprlib's, but an int too long for decimal is named, not raised: ``reprlib`` lets the
    ``ValueError`` of ``sys.get_int_max_str_digits()`` out, and a log line, a shutdown report
    or a page must not fail on an argument (every other type's repr failing is caught)."""

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:
            return long_int_text(x)


def long_int_text(value: int) -> str:
    """What stands for an int too long for decimal (``sys.get_int_max_str_digits()``)."""
    return f"<int of {value.bit_length():,} bits: too long to show>"


_arg_repr = ArgRepr()
_arg_repr.maxstring = 40
_arg_repr.maxother = 40
_arg_repr.maxlist = _arg_repr.maxtuple = _arg_repr.maxdict = _arg_repr.maxset = 4


class Timer(Protocol):
    """An entry of a scheduler, holding the job until its time: it can be taken back."""

    def cancel(self) -> None:
        """Make sure the call does not happen (if it has not happened yet)."""
        ...


class JobOwner(Protocol):
    """What a job needs of the queue that holds it."""

    def task_of(self, job: Job[Any]) -> asyncio.Task[None] | None:
        """The task running the job, if it runs here now (or was abandoned running)."""
        ...

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel the job wherever it is (see ``Job.cancel``)."""
        ...

    def release_unique(self, job: Job[Any]) -> None:
        """Free the job's unique key: it has ended."""
        ...

    def held_by(self, job: Job[Any]) -> str | None:
        """The name of the limit holding the job, if one does."""
        ...


class JobHooks:
    """What a feature adds to the life of its jobs: a journal records it, an engine settles it.

    A plain job has none (``job.hooks is None``), so it pays nothing for them. Every method
    here does nothing; a feature overrides what it needs. One object serves all the jobs of
    an executor (or of a queue): the job is passed in.
    """

    __slots__ = ()

    #: True if every attempt must be reported (``began``): the queue then takes its guarded
    #: path for these jobs, not its shortest one.
    guarded = False

    def began(self, job: Job[Any]) -> asyncio.Future[None] | None:
        """An attempt begins: what to await before the job's code runs, or None.

        A journal commits the start first, so that a job that kills its process counts.
        """
        return None

    def will_retry(self, job: Job[Any]) -> None:
        """A failed attempt is to be tried again at ``job.run_at``."""

    def reopened(self, job: Job[Any]) -> None:
        """A failed job is made pending again by a manual retry; raising refuses it (called
        before anything changed)."""

    def finished(self, job: Job[Any], status: JobStatus, exc: BaseException | None) -> None:
        """The job reached an end state here."""

    async def settle(self, job: Job[Any]) -> None:
        """Awaited by ``await job`` once the job's part here is over (``sent``, say)."""

    def where(self) -> str:
        """Where the job runs, for messages: "this process", or an engine's name."""
        return "this process"


class JobSpec:
    """What a job runs, and how: one object for every job of a function, its options and its
    queue, not four fields copied into each handle.

    A waiting job's handle is most of what a backlog holds, and the garbage collector walks
    every byte of it at each full collection: three slots fewer is 24 bytes less a job.
    """

    __slots__ = ("fn", "is_async", "options", "queue", "task_name")

    #: False on a spec shared by many jobs; True on a job's own (see ``_Rare``), which also
    #: holds the fields few jobs set.
    own = False

    def __init__(
        self, fn: Callable[..., Any], is_async: bool, options: JobOptions, queue: str
    ) -> None:
        self.fn = fn
        self.is_async = is_async
        self.options = options
        self.queue = queue
        #: The name of the asyncio task each attempt runs in (``backburner:queue:function``),
        #: for ``asyncio.all_tasks()`` and asyncio's own warnings. Made once here: left
        #: unnamed, asyncio would format a ``Task-N`` for every job.
        self.task_name = f"backburner:{queue}:{describe_callable(fn)}"

    def __repr__(self) -> str:
        return f"<JobSpec {describe_callable(self.fn)} queue={self.queue!r}>"


class _Rare(JobSpec):
    """A job's own spec, made when it first sets one of the fields few jobs ever set: its
    shared spec's fields, copied (a queue reads them the same way from either), and those.

    A plain job (no given id, unique key, hooks, timer or schedule, trace, nobody awaiting it)
    has none: it points to its shared spec, and the handle holds not even a slot for them.
    """

    __slots__ = (
        "base", "given_id", "hooks", "progress", "ready_at", "run_at", "timer", "trace",
        "unique_key", "waiters",
    )  # fmt: skip

    own = True

    def __init__(self, base: JobSpec) -> None:
        # Copied, not made anew (`JobSpec.__init__` would format the task's name again).
        self.fn, self.is_async, self.options = base.fn, base.is_async, base.options
        self.queue, self.task_name = base.queue, base.task_name
        self.base = base  # the shared spec: what another job like this one gets
        self.given_id: str | None = None
        self.hooks: JobHooks | None = None
        self.ready_at: float | None = None  # None: ready since it was enqueued
        self.run_at: float | None = None
        self.timer: Timer | None = None
        self.unique_key: str | None = None
        self.waiters: list[asyncio.Future[None]] | None = None
        self.progress: ProgressCell | None = None  # the reports of the attempt running or last run
        self.trace: tuple[str | None, Any, bool] | None = None  # see Job.trace


# A job's rare fields may first be set from two threads at once (a waiter on another event
# loop, the loop scheduling a retry): the record is made under this lock, once.
_rare_lock = threading.Lock()


class Ended(NamedTuple):
    """A finished job's end, as ``Job.reopen`` found it: what ``Job.restore`` puts back."""

    status: JobStatus
    result: Any
    exception: BaseException | None
    finished_at: float | None
    owner: JobOwner | None
    run_at: float | None


class Job(Generic[T]):
    """A job that was accepted: its identity, its status and, once it ends, its outcome.

    ``await job`` returns the function's result, re-raises its exception, or raises
    ``JobCancelled``. The handle can be awaited any number of times, from any task of the
    executor's event loop. Jobs are created by ``enqueue()``, never by hand.
    """

    __slots__ = (
        "_finished",
        "_outcome",
        "_owner",
        "_seq",
        "_spec",
        "_started",
        "_status",
        "args",
        "attempt",
        "context",
        "enqueued_at",
        "kwargs",
    )

    def __init__(
        self,
        spec: JobSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        owner: JobOwner | None,
        unique_key: str | None = None,
        hooks: JobHooks | None = None,
        job_id: str | None = None,
    ) -> None:
        # Its function, options and queue (see JobSpec): shared with the jobs like it. A
        # given id, a unique key, hooks: kept aside, in a spec of its own (see _Rare).
        self._spec = spec
        if job_id is not None or unique_key is not None or hooks is not None:
            rare = self._spec = _Rare(spec)
            rare.given_id, rare.unique_key, rare.hooks = job_id, unique_key, hooks
        #: What the job's function is called with.
        self.args = args
        # None rather than an empty dict: most jobs take no keywords, and each dict costs bytes.
        self.kwargs = kwargs or None
        #: A copy of the enqueuing code's context variables, which the job runs in.
        self.context = copy_context()
        #: Wall-clock times (``time.time()``): accepted, started running, reached an end state.
        #: ``enqueued_at`` is kept to the millisecond: the jobs accepted within one share one
        #: float, as a backlog would otherwise hold one of 24 bytes a job.
        global _stamp
        now = _now()
        if 0.0 <= now - _stamp < _STAMP_RESOLUTION:
            now = _stamp
        else:
            _stamp = now
        self.enqueued_at = now
        #: The number of the attempt running or last run: 1 for the first, 0 before it.
        self.attempt = 0
        self._owner = owner
        self._status = _PENDING
        # Four slots stay unset until first written: `_seq`, the number of its id (drawn
        # when first asked for); `_started` and `_finished` (see `started_at`); `_outcome`,
        # the result once the job has succeeded, else the error of its last failed attempt.
        # A full collection skips an unset slot, and visits every set one of every waiting
        # job: under a backlog, four visits fewer a job let requests' collections end sooner.
        # Readers use `getattr` with a default (or the properties), never the bare slot.

    @property
    def fn(self) -> Callable[..., Any]:
        """The function the job calls."""
        return self._spec.fn

    @property
    def is_async(self) -> bool:
        """True if ``fn`` is a coroutine function, run on the event loop; else it runs in a
        thread."""
        return self._spec.is_async

    @property
    def options(self) -> JobOptions:
        """How the job is to be run: retries, timeout, uniqueness (see ``JobOptions``)."""
        return self._spec.options

    @property
    def queue(self) -> str:
        """The name of the queue the job was sent to."""
        return self._spec.queue

    @property
    def started_at(self) -> float | None:
        """Wall-clock time (``time.time()``) the attempt running or last run started; None
        before its first."""
        return getattr(self, "_started", None)

    @started_at.setter
    def started_at(self, when: float | None) -> None:
        self._started = when

    @property
    def finished_at(self) -> float | None:
        """Wall-clock time (``time.time()``) the job reached an end state; None until then."""
        return getattr(self, "_finished", None)

    @finished_at.setter
    def finished_at(self, when: float | None) -> None:
        self._finished = when

    @property
    def spec(self) -> JobSpec:
        """Its function, options and queue, in the one object it shares with jobs like it."""
        spec = self._spec
        return spec.base if isinstance(spec, _Rare) else spec

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task running the job, from the moment it takes a worker until it ends.

        Named ``backburner:<queue>:<function>``. To stop the job, ``job.cancel()`` is the
        call to make: it also stops a job still waiting, and says whether it could (a sync
        job's thread cannot be interrupted).
        """
        owner = self._owner
        return None if owner is None else owner.task_of(self)

    def _rare(self) -> _Rare | None:
        # The job's own spec with its rare fields, if it has one.
        spec = self._spec
        return spec if isinstance(spec, _Rare) else None

    def _more(self) -> _Rare:
        spec = self._spec
        if not isinstance(spec, _Rare):
            with _rare_lock:
                spec = self._spec
                if not isinstance(spec, _Rare):
                    spec = self._spec = _Rare(spec)
        return spec

    @property
    def unique_key(self) -> str | None:
        """The key that makes the job unique, if ``options.unique`` gave one."""
        rare = self._rare()
        return None if rare is None else rare.unique_key

    @property
    def trace(self) -> tuple[str | None, Any, bool] | None:
        """While tracing is on (and only then: never on an untraced job's path): the W3C
        ``traceparent`` of the job's enqueue span, given when only it is known (a recovered
        job), else None (``traceparent_of`` writes it from the context when a journal stores
        the job or a remote engine sends it); that span's context (None if it is not known);
        and True if the first attempt continues that span's trace (False: every attempt
        starts its own trace, linked to it). None on an untraced job.
        """
        rare = self._rare()
        return None if rare is None else rare.trace

    @trace.setter
    def trace(self, trace: tuple[str | None, Any, bool]) -> None:
        self._more().trace = trace

    @property
    def hooks(self) -> JobHooks | None:
        """What a journal or a remote engine adds to the job's life; None for a plain job."""
        rare = self._rare()
        return None if rare is None else rare.hooks

    @hooks.setter
    def hooks(self, hooks: JobHooks | None) -> None:
        self._more().hooks = hooks

    @property
    def timer(self) -> Timer | None:
        """The scheduler's entry that holds a scheduled or retrying job until its time."""
        rare = self._rare()
        return None if rare is None else rare.timer

    @timer.setter
    def timer(self, timer: Timer | None) -> None:
        self._more().timer = timer

    @property
    def run_at(self) -> float | None:
        """For a scheduled or retrying job, the clock time it is due; else None."""
        rare = self._rare()
        return None if rare is None else rare.run_at

    @run_at.setter
    def run_at(self, when: float | None) -> None:
        self._more().run_at = when

    @property
    def ready_at(self) -> float:
        """Wall time the job became ready to start: its wait for a worker counts from then.

        ``enqueued_at`` for a plain job; when it came due for one with a ``run_at``.
        """
        rare = self._rare()
        ready = None if rare is None else rare.ready_at
        return self.enqueued_at if ready is None else ready

    @ready_at.setter
    def ready_at(self, when: float) -> None:
        self._more().ready_at = when

    @property
    def id(self) -> str:
        """A short id, unique across the processes of a deployment, used in every log line.

        Made when first asked for (most jobs are never asked), or given: a job a journal
        recovered keeps the id it had. Ids are numbered in the order they are first asked
        for, which for most code is the order of enqueueing (a journal asks at once).
        """
        rare = self._rare()
        given = None if rare is None else rare.given_id
        if given:
            return given
        seq: int | None = getattr(self, "_seq", None)
        if seq is None:
            global _drawn
            with _sequence_lock:
                seq = getattr(self, "_seq", None)
                if seq is None:
                    # `_drawn` first: from the moment the job holds its number, another
                    # thread may read its id (without the lock) and look it up (`id_number`).
                    seq = _drawn = next(_sequence)
                    self._seq = seq
        return f"{_PROCESS_TAG}-{seq}"

    def has_id(self, job_id: str, number: int | None) -> bool:
        """True if ``job_id`` is this job's id, where ``number`` is ``id_number(job_id)``.

        Makes no id for a job that has none yet (no one can know an id never made), so a
        search through thousands of waiting jobs draws no numbers and formats no strings.
        """
        rare = self._rare()
        if rare is not None and rare.given_id:
            return rare.given_id == job_id
        return number is not None and getattr(self, "_seq", None) == number

    @property
    def name(self) -> str:
        """The function's qualified name, as logs and reports show it."""
        return describe_callable(self.fn)

    @property
    def status(self) -> JobStatus:
        """Where the job is now (see ``JobStatus``)."""
        return self._status

    @property
    def held_by(self) -> str | None:
        """The name of the limit holding the job (``blocked`` or ``throttled``), else None."""
        if not self._status.held or self._owner is None:
            return None
        return self._owner.held_by(self)

    @property
    def progress(self) -> Progress | None:
        """The latest ``current_job().set_progress(...)`` report of the attempt running (or,
        between attempts and once the job ended, of the last one), or None if it reported none."""
        rare = self._rare()
        cell = None if rare is None else rare.progress
        # A cell of an earlier attempt is not this one's: a timed-out attempt's thread may
        # still write to it while its retry runs (which has not reported yet).
        if cell is None or cell.attempt != self.attempt:
            return None
        return cell.snapshot()

    def progress_cell(self) -> ProgressCell:
        """Where the running attempt reports its progress: made at its first report (for
        ``current_job()``). A retry starts afresh, so its rate is its own."""
        rare = self._more()
        cell = rare.progress
        if cell is None or cell.attempt != self.attempt:
            cell = rare.progress = ProgressCell(self.attempt)
        return cell

    def forget_progress(self) -> None:
        """Let the reports of the attempt that ran go: a run after a ``Snooze`` has the same
        attempt number (a snooze is not a failed attempt), yet is a run of its own, so it
        starts with no progress and its rate counts from its own first report."""
        rare = self._rare()
        if rare is not None:
            # (A handle of the run that ended keeps the old cell: anything it still reports
            # is written where no one reads.)
            rare.progress = None

    def done(self) -> bool:
        """True once the job has reached an end state."""
        return self._status._final

    def result(self) -> T:
        """The job's return value; re-raises its exception; ``JobCancelled`` if it was cancelled.

        Raises ``RuntimeError`` if the job has not finished yet: ``await job`` waits for it.
        """
        status = self._status
        if status is JobStatus.SUCCEEDED:
            return self._outcome  # type: ignore[no-any-return]
        if status is JobStatus.FAILED or status is JobStatus.DEAD:
            error = getattr(self, "_outcome", None)
            assert isinstance(error, BaseException)
            raise error
        if status is JobStatus.SENT:
            where = "a remote engine" if self.hooks is None else self.hooks.where()
            raise RuntimeError(
                f"job {self.id} ({self.name}) was sent to {where} and runs there: "
                f"'await job' waits for its outcome"
            )
        if status.finished:
            raise JobCancelled(f"job {self.id} ({self.name}) was {status.value}")
        raise RuntimeError(
            f"job {self.id} ({self.name}) is still {status.value}: 'await job' waits for its result"
        )

    def exception(self) -> BaseException | None:
        """The exception the job raised, or None if it has not failed (yet)."""
        outcome = getattr(self, "_outcome", None)  # (unset until an attempt ends)
        # (A result is written before the status says so, for another thread to read it
        # once the job is done: until then the slot may hold a result, which is no error.)
        if self._status is _SUCCEEDED or not isinstance(outcome, BaseException):
            return None
        return outcome

    def cancel(self) -> bool:
        """Cancel the job. Safe to call from any thread.

        A scheduled, retrying or pending job never runs (again). A running async job is cancelled
        at its next ``await``. A sync job that is already running in its thread cannot be
        interrupted: ``cancel()`` returns False and the job runs on. Returns True if the job
        was cancelled or a cancellation was requested, False if it had already finished.
        """
        if self._status.finished or self._owner is None:
            return False
        return self._owner.cancel_job(self)

    async def wait(self) -> None:
        """Wait until the job reaches an end state, without raising its outcome.

        A job sent to a remote engine waits for the send, then for its result there.
        """
        if not self._status.finished:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            rare = self._more()
            if rare.waiters is None:
                rare.waiters = []
            rare.waiters.append(future)
            # Ended meanwhile on another thread (the executor's loop, this being another
            # loop's), which may have passed its waiters before this one was among them: the
            # status is written first, so a waiter added after that sees it here.
            if self._status.finished:
                _set_if_pending(future)
            await future
        if self.hooks is not None:
            await self.hooks.settle(self)

    def __await__(self) -> Generator[Any, None, T]:
        yield from self.wait().__await__()
        return self.result()

    def describe(self, *, attempt: bool = True) -> str:
        """One line for logs and shutdown reports: id, call with truncated arguments, queue,
        and the attempt after the first (``attempt=False``: for a line that says it itself).
        A job declared ``@job(log_args=False)`` shows its call as ``name(...)``."""
        if self.options.log_args:
            parts = [_arg_repr.repr(arg) for arg in self.args]
            if self.kwargs:
                parts += [f"{key}={_arg_repr.repr(value)}" for key, value in self.kwargs.items()]
            call = ", ".join(parts)
        else:
            call = "..."
        shown = f" attempt={self.attempt}" if attempt and self.attempt > 1 else ""
        return f"{self.id} {self.name}({call}) queue={self.queue!r}{shown}"

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name} queue={self.queue!r} status={self._status.value}>"

    # The runner's side: for the queues that run jobs, not for users. Like the methods of
    # ``concurrent.futures.Future`` meant for executors, these move the job through its
    # states; a queue calls them under its own lock where other threads may race it.

    def try_start(self) -> bool:
        """Pending → running; False (and nothing changes) if it is no longer pending."""
        if self._status is _PENDING:
            self._status = _RUNNING
            return True
        return False

    def hold_until(self, when: float, status: JobStatus) -> None:
        """Wait for clock time ``when`` as ``status`` (scheduled or retrying)."""
        self._status = status
        rare = self._more()
        rare.run_at, rare.ready_at = when, None  # ready (for its wait) when it comes due

    def hold(self, status: JobStatus) -> None:
        """Pending → held by a limit (blocked or throttled)."""
        self._status = status

    def unhold(self) -> bool:
        """Held by a limit → pending; False (and nothing changes) if it is no longer held."""
        if self._status is _BLOCKED or self._status is _THROTTLED:
            self._status = _PENDING
            return True
        return False

    def become_due(self) -> JobStatus | None:
        """Scheduled or retrying → pending, returning which it was; None if neither (cancelled)."""
        status = self._status
        if status is not _SCHEDULED and status is not _RETRYING:
            return None
        self._status = _PENDING
        self.timer = None
        self.ready_at = _now()  # it waits for a worker from now
        return status

    def try_cancel_waiting(self) -> JobStatus | None:
        """Pending, held, scheduled or retrying → cancelled (not yet finished: see ``finish``).

        Returns the status it had; None if it was in none of these (running, or ended).
        """
        status = self._status
        if status is _PENDING or status is _SCHEDULED or status is _RETRYING or status.held:
            self._status = _CANCELLED
            return status
        return None

    def succeed(self, result: Any) -> None:
        """Running → succeeded with ``result``: wake every task awaiting the job."""
        # The outcome first (the error of an earlier attempt, if it was retried, goes): a
        # thread that sees the job done must find its result (see `exception`).
        self._outcome = result
        self._status = _SUCCEEDED
        self._finished = _now()
        if self._spec.own:  # hooks, a unique key or waiters: else nothing to tell
            self._settled(_SUCCEEDED, None)

    def keep_error(self, exc: BaseException) -> None:
        """Record the error of a failed attempt that will be retried (visible meanwhile)."""
        self._outcome = exc

    def finish(
        self, status: JobStatus, result: Any = None, exc: BaseException | None = None
    ) -> None:
        """Record the end state and wake every task awaiting the job."""
        self._outcome = result if status is _SUCCEEDED else exc  # first: see `succeed`
        self._status = status
        self._finished = _now()
        # The task stays: an abandoned job's task may run on, and must stay referenced.
        self._settled(status, exc)

    def reopen(self, owner: JobOwner, run_at: float) -> Ended:
        """A finished job → pending again, for a retry asked for by hand; returns its end."""
        if self.hooks is not None:  # first: a journal may refuse it (another process's now)
            self.hooks.reopened(self)
        ended = Ended(
            self._status,
            self.result() if self._status is _SUCCEEDED else None,
            self.exception(),
            self.finished_at,
            self._owner,
            self.run_at,
        )
        self._owner = owner
        self._status = _PENDING
        self._outcome = None
        self.finished_at = None
        self.context = contextvars.copy_context()
        # Ready now: its wait for a worker counts from here.
        rare = self._more()
        rare.run_at, rare.ready_at = run_at, _now()
        return ended

    def restore(self, ended: Ended) -> None:
        """Undo ``reopen``: the job is as it ended (its retry was refused)."""
        self._status = ended.status
        self._outcome = ended.result if ended.status is _SUCCEEDED else ended.exception
        self.finished_at, self._owner, self.run_at = ended.finished_at, ended.owner, ended.run_at
        self.context = None  # type: ignore[assignment]  # as it was: an ended job's is gone
        if self.hooks is not None:  # a journal wrote it reopened: it has ended after all
            self.hooks.finished(self, ended.status, ended.exception)

    def _settled(self, status: JobStatus, exc: BaseException | None) -> None:
        rare = self._rare()
        if rare is None:
            return
        try:
            if rare.hooks is not None:
                rare.hooks.finished(self, status, exc)
        finally:  # whatever a hook does, the key is freed and the awaiters woken
            if rare.unique_key is not None and self._owner is not None:
                self._owner.release_unique(self)
            waiters, rare.waiters = rare.waiters, None
            for future in waiters or ():
                _wake(future)


def _wake(future: asyncio.Future[None]) -> None:
    # A waiter may belong to another event loop than the one finishing the job (a test's loop,
    # say): wake it in its own loop's thread.
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        if not future.done():
            future.set_result(None)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_set_if_pending, future)


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def id_number(job_id: str) -> int | None:
    """The number in ``job_id`` if it is an id this process made (see ``Job.id``), else None
    (another process's id, a given one, or no id at all): what ``Job.has_id`` compares."""
    tag, _, digits = job_id.rpartition("-")
    # (More than 20 digits names no number ever drawn, and int() refuses over 4,300: a
    # lookup by an id from a URL must answer None, not raise.)
    if tag != _PROCESS_TAG or len(digits) > 20 or not (digits.isascii() and digits.isdigit()):
        return None
    number = int(digits)
    # ("007" names no job: ids are written without leading zeros.)
    return number if 0 < number <= _drawn and str(number) == digits else None


def describe_callable(fn: object) -> str:
    """A readable name for any callable: ``module.qualname`` stripped to ``qualname``."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    if isinstance(fn, functools.partial):  # (not any `.func`: a Mock has one, and so on)
        return f"partial({describe_callable(fn.func)})"
    return type(fn).__qualname__


def traceparent_of(job: Job[Any]) -> str | None:
    """The W3C ``traceparent`` of a traced job's enqueue span (see ``Job.trace``), or None.

    Written out only here, when a journal stores the job or a remote engine sends it: a
    traced job keeps its enqueue span's context, and most jobs never need the text.
    """
    trace = job.trace
    if trace is None:
        return None
    text: str | None = trace[0]
    context = trace[1]
    if text is None and context is not None:
        text = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    return text
