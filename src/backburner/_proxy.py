"""``background``: enqueue onto whichever executor the current request or job belongs to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._context import current_executor, interceptor
from ._enqueue import EnqueueMethods
from ._errors import NotRunning
from ._executor import Backburner
from ._job import Job
from ._stats import ExecutorStats

__all__ = ["BackgroundProxy", "background"]


class BackgroundProxy(EnqueueMethods):
    """Stands for the executor of the app handling the current request, or of the running job.

    ``from backburner import background`` works anywhere: in async and sync endpoints, in jobs
    (to enqueue follow-up work), and in threads the app started, provided exactly one executor
    runs in the process. Raises ``NotRunning`` when none can be found.
    """

    __slots__ = ()

    def _enqueue_target(self) -> Backburner:
        try:
            return current_executor()
        except NotRunning:
            if interceptor:  # a testing mode catches jobs even where no executor runs
                return _detached
            raise

    @property
    def executor(self) -> Backburner:
        """The executor this proxy stands for here and now."""
        return current_executor()

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

#: The proxy to import: ``from backburner import background``.
background = BackgroundProxy()
