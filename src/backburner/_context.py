"""Which executor the current code belongs to, and whether a testing mode catches its jobs.

``BackburnerMiddleware`` sets ``current_executor_var`` for every request it passes on, and a
queue sets it again inside every job it runs; the ``background`` proxy (``_proxy.py``) reads it.
Code with no such context (a thread the application started itself) gets the one executor
running in the process, if there is exactly one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import NotRunning

if TYPE_CHECKING:
    from ._executor import Backburner
    from ._job import Job

__all__ = ["current_executor", "current_executor_var", "running_executors"]

current_executor_var: contextvars.ContextVar[Backburner] = contextvars.ContextVar(
    "backburner_executor"
)

#: Executors between start() and the end of aclose(), in start order.
running_executors: dict[Backburner, None] = {}

#: Set by ``backburner.testing``: called instead of queueing, for every enqueue in the process.
#: (Process-wide, not a context variable: a TestClient runs the app in a thread of its own.)
#: Called as (executor or None, fn, args, kwargs, option changes or None, run_at or None).
Interceptor = Callable[
    [
        "Backburner | None",
        Callable[..., Any],
        tuple[Any, ...],
        dict[str, Any],
        "dict[str, Any] | None",
        "float | None",
    ],
    "Job[Any]",
]
interceptor: list[Interceptor] = []


def current_executor() -> Backburner:
    """The executor of the request or job being handled, else the only one running here."""
    try:
        return current_executor_var.get()
    except LookupError:
        pass
    if len(running_executors) == 1:
        return next(iter(running_executors))
    if not running_executors:
        raise NotRunning(
            "no backburner executor is running: add BackburnerMiddleware to the app and run it "
            "with its lifespan (a TestClient inside 'with TestClient(app)'), or use "
            "'async with Backburner() as bg' and call bg.enqueue(...)"
        )
    raise NotRunning(
        f"{len(running_executors)} backburner executors are running in this process and this "
        f"code is not inside a request or job of any of them: call enqueue() on the executor "
        f"itself rather than on `background`"
    )
