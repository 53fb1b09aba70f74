"""The enqueue family, typed once for ``Backburner``, ``background`` and ``options(...)``.

``enqueue(fn, /, *args, **kwargs)``: every argument after ``fn`` belongs to ``fn``. Options
(queue, retries, timeout, ...) come from ``@job`` on the function or from ``options(...)``,
never from ``enqueue``'s keywords, so that no option can take a keyword from the function.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload

from ._checks import MAX_SECONDS, too_long
from ._clock import Clock
from ._job import Job
from ._limitdefs import Limit
from ._options import DEFAULT_OPTIONS, UniqueKey


class Target(Protocol):
    """What the enqueue family needs of whoever takes the jobs (the executor).

    Its two entry points are the friends of this module: every call of the family ends in one
    of them, with the function, its arguments, the option changes, and a time for delayed jobs.
    """

    clock: Clock

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
        run_at: float | None,
    ) -> Job[Any]: ...

    async def _asubmit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
    ) -> Job[Any]: ...


__all__ = ["EnqueueMethods", "Enqueuer", "Target"]

P = ParamSpec("P")
T = TypeVar("T")

_UNSET: Any = object()


class EnqueueMethods:
    """``enqueue``, ``aenqueue``, ``enqueue_in``, ``enqueue_at`` and ``options``."""

    __slots__ = ()

    def _enqueue_target(self) -> Target:
        raise NotImplementedError

    def _option_changes(self) -> dict[str, Any] | None:
        return None

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
        thread. ``fn`` may be an ``async def`` (run on the event loop) or a plain function (run
        in one of the executor's threads). With a journal it returns once the job is committed
        (its thread waits for that; ``aenqueue`` waits without blocking the loop).
        """
        return self._enqueue_target()._submit(fn, args, kwargs, self._option_changes(), None)

    @overload
    async def aenqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    async def aenqueue(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    async def aenqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Like ``enqueue``, but when the queue is full, wait for room instead of raising.

        With a journal, also wait (suspended, the event loop running on) until the job is
        committed: the way to enqueue durable jobs from async code.
        """
        return await self._enqueue_target()._asubmit(fn, args, kwargs, self._option_changes())

    @overload
    def enqueue_in(
        self,
        delay: float | timedelta,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Job[T]: ...
    @overload
    def enqueue_in(
        self, delay: float | timedelta, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    def enqueue_in(
        self, delay: float | timedelta, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Job[Any]:
        """Accept the job now, to run ``delay`` seconds (or a ``timedelta``) from now.

        The job is ``scheduled`` until then; when due it goes to its queue like any job. A
        delay is at most ten years (``MAX_SECONDS``): longer raises ``ValueError``.
        """
        target = self._enqueue_target()
        seconds = _seconds(delay)
        return target._submit(
            fn, args, kwargs, self._option_changes(), target.clock.now() + seconds
        )

    @overload
    def enqueue_at(
        self, when: datetime, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def enqueue_at(
        self, when: datetime, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    def enqueue_at(
        self, when: datetime, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Job[Any]:
        """Accept the job now, to run at ``when``: a timezone-aware ``datetime``.

        A time in the past runs at once; one more than ten years ahead (``MAX_SECONDS``)
        raises ``ValueError``.
        """
        if not isinstance(when, datetime):
            raise TypeError(f"when must be a datetime, got {type(when).__name__} {when!r}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"when must be timezone-aware, got the naive {when!r}: a naive time is ambiguous. "
                f"Use datetime.now(timezone.utc) + ..., or attach a ZoneInfo"
            )
        target = self._enqueue_target()
        run_at = when.timestamp()
        if run_at - target.clock.now() > MAX_SECONDS:
            raise ValueError(
                f"when is {when.isoformat()}: jobs may be scheduled at most {MAX_SECONDS} "
                f"seconds (ten years) ahead"
            )
        return target._submit(fn, args, kwargs, self._option_changes(), run_at)

    def options(
        self,
        *,
        queue: str = _UNSET,
        retries: int = _UNSET,
        retry_on: tuple[type[BaseException], ...] = _UNSET,
        backoff: float = _UNSET,
        backoff_max: float = _UNSET,
        jitter: float = _UNSET,
        timeout: float | None = _UNSET,
        unique: UniqueKey = _UNSET,
        on_duplicate: Literal["return", "raise"] = _UNSET,
        keep_result: bool = _UNSET,
        meta: Mapping[str, Any] | None = _UNSET,
        limits: Iterable[Limit] = _UNSET,
        debounce: float | None = _UNSET,
        log_args: bool = _UNSET,
    ) -> Enqueuer:
        """Enqueue with options for these calls: ``bg.options(queue="mail").enqueue(send, to)``.

        What is given here overrides the function's ``@job`` options; see ``JobOptions`` for
        what each means. Checked now: a bad value fails here, not at enqueue. ``meta`` is
        plain JSON kept with the job and shown by ``lookup`` (``options(meta={"user": 7})``).
        """
        changes = {
            name: value
            for name, value in (
                ("queue", queue),
                ("retries", retries),
                ("retry_on", retry_on),
                ("backoff", backoff),
                ("backoff_max", backoff_max),
                ("jitter", jitter),
                ("timeout", timeout),
                ("unique", unique),
                ("on_duplicate", on_duplicate),
                ("keep_result", keep_result),
                ("meta", meta),
                ("limits", limits),
                ("debounce", debounce),
                ("log_args", log_args),
            )
            if value is not _UNSET
        }
        merged = {**(self._option_changes() or {}), **changes}
        checked = DEFAULT_OPTIONS.replace(**merged)  # check the values now
        if "meta" in merged:
            merged["meta"] = checked.meta  # the read-only copy: checked once, here
        return Enqueuer(self._enqueue_target, merged)


class Enqueuer(EnqueueMethods):
    """The enqueue family with options fixed; made by ``options(...)``."""

    __slots__ = ("_changes", "_target")

    def __init__(self, target: Callable[[], Target], changes: dict[str, Any]) -> None:
        self._target = target
        self._changes = changes

    def _enqueue_target(self) -> Target:
        return self._target()

    def _option_changes(self) -> dict[str, Any] | None:
        return self._changes

    def __repr__(self) -> str:
        return f"<Enqueuer options={self._changes!r}>"


def _seconds(delay: float | timedelta) -> float:
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TypeError(
            f"delay must be seconds or a timedelta, got {type(delay).__name__} {delay!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"delay must be a finite number of seconds, 0 or more, got {delay!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(too_long("delay", delay))
    return seconds
