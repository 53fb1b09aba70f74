"""``background``: enqueue onto whichever executor the current request or job belongs to.

It has the executor's whole public surface but its lifecycle (``open``, ``start``, ``aclose``
belong to whoever opened the executor: the middleware). The enqueue family comes from
``EnqueueMethods`` (the hot path, as it was); every other method is a ``_Forward`` of
``Backburner``'s, typed by it, and every attribute a ``_Read``. Both are class-level
descriptors (no ``__getattr__``) that look the current executor up at each use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, NoReturn, ParamSpec, Protocol, TypeVar, cast, overload

from . import _context
from ._context import interceptor, request_enqueue_var
from ._enqueue import EnqueueMethods
from ._errors import NotRunning
from ._executor import Backburner
from ._job import Job

__all__ = ["BackgroundProxy", "background", "current_executor"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def current_executor() -> Backburner:
    """The executor of the request or job being handled, else the only one running here.

    Raises ``NotRunning`` saying what to do when there is none (or several, and no context).
    """
    return cast(Backburner, _context.current_executor())


class _EnqueueFn(Protocol):
    """``Backburner.enqueue``'s signature, for the bound method ``background.enqueue`` gives."""

    @overload
    def __call__(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...


class _Enqueue:
    """``background.enqueue`` is the current executor's own ``enqueue``: the same fast path.

    The descriptor hands out the executor's bound method, so the call itself goes straight to
    it: nothing is repacked. Wherever the current executor is named (a request, a job that
    carries its executor, ``async with bg:``) that method is in a context variable beside it,
    so finding it is one read; elsewhere (a thread the app started) the executor is found
    when the call comes, as ``current_executor()`` finds it.

    While exactly one executor is open in the process (one app: the common case) this
    descriptor steps aside: ``BackgroundProxy.enqueue`` is then that executor's bound
    ``enqueue`` itself (``_follow_lone_executor``), which every context means anyway, and
    reading it runs no Python code (the descriptor's call and its context read cost about a
    tenth of an enqueue).
    """

    __doc__ = Backburner.enqueue.__doc__

    @overload
    def __get__(self, proxy: None, owner: type[Any]) -> _Enqueue: ...
    @overload
    def __get__(self, proxy: BackgroundProxy, owner: type[Any]) -> _EnqueueFn: ...
    def __get__(self, proxy: BackgroundProxy | None, owner: type[Any]) -> _Enqueue | _EnqueueFn:
        if proxy is None:
            return self
        enqueue = request_enqueue_var.get(None)  # in a request or job: its executor's
        return _enqueue_anywhere if enqueue is None else enqueue

    def __repr__(self) -> str:
        return "<background.enqueue: Backburner.enqueue of the current executor>"


_ENQUEUE = _Enqueue()


def _find_and_enqueue(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
    """``enqueue`` where no executor was named: found now (or caught by a testing mode)."""
    try:
        executor = current_executor()
    except NotRunning:
        if interceptor:  # a testing mode catches jobs even where no executor runs
            return interceptor[-1](None, fn, args, kwargs, None, None)
        raise
    return executor.enqueue(fn, *args, **kwargs)


_enqueue_anywhere = cast(_EnqueueFn, _find_and_enqueue)


def _target() -> Backburner:
    try:
        return current_executor()
    except NotRunning:
        if interceptor:  # a testing mode catches jobs even where no executor runs
            return _detached
        raise


class _Forward(Generic[P, R]):
    """``background.name(...)`` is ``current_executor().name(...)``, typed as the executor's."""

    def __init__(self, method: Callable[Concatenate[Backburner, P], R]) -> None:
        self.name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, proxy: None, owner: type[Any]) -> _Forward[P, R]: ...
    @overload
    def __get__(self, proxy: BackgroundProxy, owner: type[Any]) -> Callable[P, R]: ...
    def __get__(
        self, proxy: BackgroundProxy | None, owner: type[Any]
    ) -> _Forward[P, R] | Callable[P, R]:
        if proxy is None:
            return self
        return getattr(current_executor(), self.name)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<background.{self.name}: Backburner.{self.name} of the current executor>"


class _Read(Generic[T]):
    """``background.name`` is ``current_executor().name``, read-only, typed by ``read``."""

    def __init__(self, read: Callable[[Backburner], T]) -> None:
        self.read = read
        self.name = "?"

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name
        self.__doc__ = f"``Backburner.{name}`` of the current executor."

    @overload
    def __get__(self, proxy: None, owner: type[Any]) -> _Read[T]: ...
    @overload
    def __get__(self, proxy: BackgroundProxy, owner: type[Any]) -> T: ...
    def __get__(self, proxy: BackgroundProxy | None, owner: type[Any]) -> _Read[T] | T:
        if proxy is None:
            return self
        return self.read(current_executor())

    def __set__(self, proxy: BackgroundProxy, value: NoReturn) -> None:  # a type error too
        raise AttributeError(
            f"background.{self.name} is read-only: set it on the executor itself "
            f"(background.executor.{self.name} = ...), which every request and job shares"
        )


class BackgroundProxy(EnqueueMethods):
    """Stands for the executor of the app handling the current request, or of the running job.

    ``from backburner import background`` works anywhere: in async and sync endpoints, in jobs
    (to enqueue follow-up work), and in threads the app started, provided exactly one executor
    runs in the process. Raises ``NotRunning`` when none can be found.

    It has every public method and attribute of ``Backburner`` but ``open``, ``start`` and
    ``aclose``: the executor's lifecycle belongs to whoever opened it (the middleware). Each
    use finds the current executor anew; ``background.executor`` is that executor itself.
    """

    __slots__ = ()

    def _enqueue_target(self) -> Backburner:
        return _target()

    @property
    def executor(self) -> Backburner:
        """The executor this proxy stands for here and now."""
        return current_executor()

    enqueue = _ENQUEUE  # the executor's own, bound: see _Enqueue

    # Backburner's methods, in its order (test_public_api checks that none is missing).
    add_periodic = _Forward(Backburner.add_periodic)
    trigger = _Forward(Backburner.trigger)
    failures = _Forward(Backburner.failures)
    retry = _Forward(Backburner.retry)
    discard = _Forward(Backburner.discard)
    retry_all = _Forward(Backburner.retry_all)
    discard_all = _Forward(Backburner.discard_all)
    stats = _Forward(Backburner.stats)
    pause = _Forward(Backburner.pause)
    resume = _Forward(Backburner.resume)
    paused = _Forward(Backburner.paused)
    find_job = _Forward(Backburner.find_job)
    lookup = _Forward(Backburner.lookup)
    queues = _Forward(Backburner.queues)
    join = _Forward(Backburner.join)

    # And its attributes.
    running = _Read(lambda executor: executor.running)
    shutdown_timeout = _Read(lambda executor: executor.shutdown_timeout)
    cancel_grace = _Read(lambda executor: executor.cancel_grace)
    queue_configs = _Read(lambda executor: executor.queue_configs)
    on_error = _Read(lambda executor: executor.on_error)
    max_scheduled = _Read(lambda executor: executor.max_scheduled)
    clock = _Read(lambda executor: executor.clock)
    loop_lag_warning = _Read(lambda executor: executor.loop_lag_warning)
    platform_grace = _Read(lambda executor: executor.platform_grace)
    server_shutdown_timeout = _Read(lambda executor: executor.server_shutdown_timeout)
    journal_config = _Read(lambda executor: executor.journal_config)
    engine = _Read(lambda executor: executor.engine)
    coordination = _Read(lambda executor: executor.coordination)
    loop = _Read(lambda executor: executor.loop)
    scheduler = _Read(lambda executor: executor.scheduler)
    history = _Read(lambda executor: executor.history)
    results = _Read(lambda executor: executor.results)
    yielding = _Read(lambda executor: executor.yielding)
    telemetry = _Read(lambda executor: executor.telemetry)

    def __repr__(self) -> str:
        return "<backburner.background proxy>"


class _Detached(Backburner):
    """Stands in when a testing mode catches jobs and no executor exists: it only forwards."""

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
        run_at: float | None,
    ) -> Job[Any]:
        return interceptor[-1](None, fn, args, kwargs, changes, run_at)

    async def _asubmit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        changes: dict[str, Any] | None,
    ) -> Job[Any]:
        return interceptor[-1](None, fn, args, kwargs, changes, None)


_detached = _Detached()


def _follow_lone_executor(lone: object | None) -> None:
    """Make ``background.enqueue`` the lone open executor's bound ``enqueue``, or the
    descriptor again when there is none or there are several (see ``_Enqueue``)."""
    # A bound method has no __get__: as a class attribute it is handed out as it is.
    enqueue = _ENQUEUE if lone is None else cast(Backburner, lone).enqueue
    BackgroundProxy.enqueue = enqueue  # type: ignore[assignment]


_context.lone_executor_watchers.append(_follow_lone_executor)

#: The proxy to import: ``from backburner import background``.
background = BackgroundProxy()
