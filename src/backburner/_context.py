"""Which executor the current code belongs to, and whether a testing mode catches its jobs.

``BackburnerMiddleware`` sets ``current_executor_var`` for every request it passes on, and a
job runs in a copy of its enqueuer's context, which names the executor when more than one is
open; the ``background`` proxy (``_proxy.py``) reads it.
Code with no such context (a thread the application started itself) gets the one executor
running in the process, if there is exactly one.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from ._errors import NotRunning
from ._job import Job

__all__ = [
    "current_executor",
    "current_executor_var",
    "executor_closed",
    "executor_opened",
    "lone_executor_watchers",
    "name_executor",
    "open_executors",
    "request_enqueue_var",
    "running_executors",
]

# The executors are held as plain objects: this module sits below the executor (it cannot
# name its class); the executor's module gives `current_executor()` its type.
current_executor_var: contextvars.ContextVar[object] = contextvars.ContextVar("backburner_executor")

#: The bound ``enqueue`` of the executor ``current_executor_var`` names, set with it wherever it
#: is set (a request, a job, ``async with bg:``): ``background.enqueue``'s fast path reads it.
request_enqueue_var: contextvars.ContextVar[Callable[..., Any]] = contextvars.ContextVar(
    "backburner_enqueue"
)

Tokens = tuple["contextvars.Token[object]", "contextvars.Token[Callable[..., Any]]"]


def name_executor(executor: object, enqueue: Callable[..., Any]) -> Tokens:
    """Make ``executor`` the one ``background`` means in the current context, and its bound
    ``enqueue`` the one ``background.enqueue`` calls; the tokens undo it."""
    return current_executor_var.set(executor), request_enqueue_var.set(enqueue)


#: Executors between start() and the end of aclose(), in start order.
running_executors: dict[object, None] = {}

#: Executors between open() and the end of aclose(), each with the callable that tells it
#: whether it is the only one open. While it is, the jobs it runs need not carry it in their
#: context (`current_executor()` finds it anyway), which saves a context variable read on
#: every enqueue.
open_executors: dict[object, Callable[[bool], None]] = {}
_open_lock = threading.Lock()

#: Told, each time it may have changed, which executor is the only one open in the process
#: (None when there are none or several): the ``background`` proxy binds its ``enqueue`` to it
#: then, so that finding ``background.enqueue`` runs no code of ours (see ``_proxy.py``).
lone_executor_watchers: list[Callable[[object | None], None]] = []


def executor_opened(executor: object, set_alone: Callable[[bool], None]) -> None:
    """Count ``executor`` as open, and tell every open executor whether it is alone."""
    with _open_lock:
        open_executors[executor] = set_alone
        _update_alone()


def executor_closed(executor: object) -> None:
    """Count ``executor`` as closed, and tell the others whether they are now alone."""
    with _open_lock:
        set_alone = open_executors.pop(executor, None)
        if set_alone is not None:
            set_alone(False)
        _update_alone()


def _update_alone() -> None:
    alone = len(open_executors) == 1
    for set_alone in open_executors.values():
        set_alone(alone)
    lone = next(iter(open_executors)) if alone else None
    for watcher in lone_executor_watchers:
        watcher(lone)


#: Set by ``backburner.testing``: called instead of queueing, for every enqueue in the process.
#: (Process-wide, not a context variable: a TestClient runs the app in a thread of its own.)
#: Called as (executor or None, fn, args, kwargs, option changes or None, run_at or None).
Interceptor = Callable[
    [
        "object | None",
        Callable[..., Any],
        tuple[Any, ...],
        dict[str, Any],
        "dict[str, Any] | None",
        "float | None",
    ],
    "Job[Any]",
]
interceptor: list[Interceptor] = []


def current_executor() -> object:
    """The executor of the request or job being handled, else the only one running here.

    An executor named by the context but closed since (a test's, say) gives way to the only
    one running, if there is one.
    """
    executor = current_executor_var.get(None)
    if executor is not None and (executor in open_executors or not running_executors):
        return executor
    if len(running_executors) == 1:
        return next(iter(running_executors))
    if executor is not None:
        return executor  # closed: enqueueing on it says so
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
