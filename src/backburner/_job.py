"""``Job``: the handle ``enqueue()`` returns, and the record a worker fills in."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import reprlib
import secrets
import time
from collections.abc import Callable, Generator
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._errors import JobCancelled
from ._options import DEFAULT_OPTIONS, JobOptions
from ._status import JobStatus

if TYPE_CHECKING:
    from ._scheduler import Timer

__all__ = ["Job"]

_PENDING = JobStatus.PENDING
_now = time.time  # (module globals: one lookup less each, for every job made)

T = TypeVar("T")

# Job ids are "<process tag>-<sequence>": unique within the process, and (the tag being random)
# across the processes of one deployment, cheap to make, and short enough to read in a log line.
_PROCESS_TAG = f"{os.getpid():x}{secrets.token_hex(2)}"
_sequence = itertools.count(1)

_arg_repr = reprlib.Repr()
_arg_repr.maxstring = 40
_arg_repr.maxother = 40
_arg_repr.maxlist = _arg_repr.maxtuple = _arg_repr.maxdict = _arg_repr.maxset = 4


class JobOwner(Protocol):
    """What a job needs of the queue that holds it."""

    def cancel_job(self, job: Job[Any]) -> bool:
        """Cancel the job wherever it is (see ``Job.cancel``)."""
        ...

    def release_unique(self, job: Job[Any]) -> None:
        """Free the job's unique key: it has ended."""
        ...


class Job(Generic[T]):
    """A job that was accepted: its identity, its status and, once it ends, its outcome.

    ``await job`` returns the function's result, re-raises its exception, or raises
    ``JobCancelled``. The handle can be awaited any number of times, from any task of the
    executor's event loop. Jobs are created by ``enqueue()``, never by hand.
    """

    __slots__ = (
        "_exception",
        "_owner",
        "_ready_at",
        "_result",
        "_seq",
        "_status",
        "_task",
        "_timer",
        "_waiters",
        "args",
        "attempt",
        "context",
        "enqueued_at",
        "finished_at",
        "fn",
        "is_async",
        "kwargs",
        "options",
        "queue",
        "run_at",
        "started_at",
        "unique_key",
    )
    # Wall time a job with a run_at became ready to start. Set only where run_at is (so never
    # on a plain job's path: no store per enqueue); read only when run_at is not None.
    _ready_at: float

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        queue: str,
        is_async: bool,
        owner: JobOwner | None,
        options: JobOptions = DEFAULT_OPTIONS,
        unique_key: str | None = None,
    ) -> None:
        self._seq = next(_sequence)
        #: The function the job calls, and what it is called with.
        self.fn = fn
        self.args = args
        # None rather than an empty dict: most jobs take no keywords, and each dict costs bytes.
        self.kwargs = kwargs or None
        #: The name of the queue the job was sent to.
        self.queue = queue
        #: True if ``fn`` is a coroutine function, run on the event loop; else it runs in a thread.
        self.is_async = is_async
        #: A copy of the enqueuing code's context variables, which the job runs in.
        self.context = copy_context()
        #: Wall-clock times (``time.time()``): accepted, started running, reached an end state.
        self.enqueued_at = _now()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        #: How the job is to be run: retries, timeout, uniqueness (see ``JobOptions``).
        self.options = options
        #: The number of the attempt running or last run: 1 for the first, 0 before it.
        self.attempt = 0
        #: For a scheduled or retrying job, the clock time it is due; else None.
        self.run_at: float | None = None
        #: The key that makes the job unique, if ``options.unique`` gave one.
        self.unique_key = unique_key
        self._owner = owner
        self._timer: Timer | None = None
        self._status = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    @property
    def id(self) -> str:
        """A short id, unique across the processes of a deployment, used in every log line."""
        return f"{_PROCESS_TAG}-{self._seq}"

    @property
    def name(self) -> str:
        """The function's qualified name, as logs and reports show it."""
        return describe_callable(self.fn)

    @property
    def status(self) -> JobStatus:
        """Where the job is now (see ``JobStatus``)."""
        return self._status

    def done(self) -> bool:
        """True once the job has reached an end state."""
        return self._status._final

    def result(self) -> T:
        """The job's return value; re-raises its exception; ``JobCancelled`` if it was cancelled.

        Raises ``RuntimeError`` if the job has not finished yet: ``await job`` waits for it.
        """
        status = self._status
        if status is JobStatus.SUCCEEDED:
            return self._result  # type: ignore[no-any-return]
        if status is JobStatus.FAILED or status is JobStatus.DEAD:
            assert self._exception is not None
            raise self._exception
        if status.finished:
            raise JobCancelled(f"job {self.id} ({self.name}) was {status.value}")
        raise RuntimeError(
            f"job {self.id} ({self.name}) is still {status.value}: 'await job' waits for its result"
        )

    def exception(self) -> BaseException | None:
        """The exception the job raised, or None if it has not failed (yet)."""
        return self._exception

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
        """Wait until the job reaches an end state, without raising its outcome."""
        if self._status.finished:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        await future

    def __await__(self) -> Generator[Any, None, T]:
        yield from self.wait().__await__()
        return self.result()

    def describe(self, *, attempt: bool = True) -> str:
        """One line for logs and shutdown reports: id, call with truncated arguments, queue,
        and the attempt after the first (``attempt=False``: for a line that says it itself)."""
        parts = [_arg_repr.repr(arg) for arg in self.args]
        if self.kwargs:
            parts += [f"{key}={_arg_repr.repr(value)}" for key, value in self.kwargs.items()]
        shown = f" attempt={self.attempt}" if attempt and self.attempt > 1 else ""
        return f"{self.id} {self.name}({', '.join(parts)}) queue={self.queue!r}{shown}"

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name} queue={self.queue!r} status={self._status.value}>"

    # What follows is for the queue that runs the job, not for users.

    def _began(self) -> asyncio.Future[None] | None:
        """An attempt begins. (A hook: a journaled job records it; a plain job does nothing.)

        A future to await before the job's code runs, or None: a journaled job's start is
        committed first (see ``DurableJob``).
        """

    def _will_retry(self) -> None:
        """A failed attempt is to be retried at ``run_at``. (A hook, like ``_began``.)"""

    def _reopen(self, owner: JobOwner) -> None:
        """Make a failed job pending again, for a retry asked for by hand."""
        self._owner = owner
        self._status = JobStatus.PENDING
        self._result = self._exception = None
        self.finished_at = None
        self.context = contextvars.copy_context()

    def _finish(
        self, status: JobStatus, result: Any = None, exc: BaseException | None = None
    ) -> None:
        """Record the end state and wake every task awaiting the job."""
        self._status = status
        self._result = result
        self._exception = exc
        self.finished_at = time.time()
        # _task stays: an abandoned job's task may run on, and must stay referenced.
        self._settled()

    def _settled(self) -> None:
        """Free the job's unique key and wake every task awaiting it: it has ended."""
        if self.unique_key is not None and self._owner is not None:
            self._owner.release_unique(self)
        waiters, self._waiters = self._waiters, None
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


def describe_callable(fn: object) -> str:
    """A readable name for any callable: ``module.qualname`` stripped to ``qualname``."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None:
        return f"partial({describe_callable(inner)})"
    return type(fn).__qualname__
