"""``background``: enqueue onto whichever executor the current request or job belongs to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from ._config import DEFAULT_QUEUE, check_queue_name
from ._context import current_executor, interceptor
from ._errors import NotRunning
from ._executor import Backburner, Enqueuer
from ._job import Job
from ._stats import ExecutorStats

__all__ = ["BackgroundProxy", "background"]

P = ParamSpec("P")
T = TypeVar("T")


class BackgroundProxy:
    """Stands for the executor of the app handling the current request, or of the running job.

    ``from backburner import background`` works anywhere: in async and sync endpoints, in jobs
    (to enqueue follow-up work), and in threads the app started, provided exactly one executor
    runs in the process. Raises ``NotRunning`` when none can be found.
    """

    __slots__ = ()

    @property
    def executor(self) -> Backburner:
        """The executor this proxy stands for here and now."""
        return current_executor()

    @overload
    def enqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    def enqueue(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    def enqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """``Backburner.enqueue`` on the current executor."""
        return _resolve()._submit(fn, args, kwargs, None)

    @overload
    async def aenqueue(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    @overload
    async def aenqueue(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job[T]: ...
    async def aenqueue(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job[Any]:
        """``Backburner.aenqueue`` on the current executor."""
        return await _resolve()._asubmit(fn, args, kwargs, None)

    def options(self, *, queue: str = DEFAULT_QUEUE) -> Enqueuer:
        """``Backburner.options`` on the executor current when the job is enqueued."""
        return Enqueuer(_resolve, check_queue_name(queue))

    def stats(self) -> ExecutorStats:
        """``Backburner.stats`` of the current executor."""
        return current_executor().stats()

    async def join(self) -> None:
        """``Backburner.join`` on the current executor."""
        await current_executor().join()

    def __repr__(self) -> str:
        return "<backburner.background proxy>"


class _Detached(Backburner):
    """Stands in when a testing mode catches jobs and no executor exists: it only forwards."""

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue_name: str | None,
    ) -> Job[Any]:
        return interceptor[-1](None, fn, args, kwargs, queue_name)

    async def _asubmit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue_name: str | None,
    ) -> Job[Any]:
        return self._submit(fn, args, kwargs, queue_name)


_detached = _Detached()


def _resolve() -> Backburner:
    try:
        return current_executor()
    except NotRunning:
        if interceptor:  # a testing mode catches jobs even where no executor runs
            return _detached
        raise


#: The proxy to import: ``from backburner import background``.
background = BackgroundProxy()
