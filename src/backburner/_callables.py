"""Checking a job's function and arguments at the call site, cheaply enough for every enqueue.

``inspect.signature(fn).bind(...)`` costs several microseconds, more than the rest of an enqueue.
So each function's parameters are read once into a ``CallPlan`` and a call is checked against it
with a few comparisons; only a call that fails the quick check pays for ``bind()``, which then
writes the exact error message (and overrules the quick check if the two ever disagree).
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._job import JobSpec, describe_callable
from ._options import JobOptions, options_of

__all__ = ["CallPlan", "plan_call"]
# (``_plans`` is read directly by the executor's enqueue path, to save a call per job.)

_VARARGS = inspect.CO_VARARGS
_VARKEYWORDS = inspect.CO_VARKEYWORDS

# Plans are kept per function. Bounded, because code that makes a new lambda per request would
# otherwise grow it forever; clearing it only costs a re-read of each signature.
_PLAN_CACHE_SIZE = 2048
_plans: dict[Any, CallPlan] = {}


@dataclass(slots=True, frozen=True)
class CallPlan:
    """What enqueue needs to know about a function: how to run it and how to check a call."""

    is_async: bool
    #: Fewest and most positional arguments a call may pass (max is None with ``*args``).
    min_positional: int
    max_positional: int | None
    #: Parameters a keyword may name, mapped to their position (positional-only ones excluded).
    keyword_positions: dict[str, int]
    positional_names: tuple[str, ...]
    keyword_only: frozenset[str]
    required_keyword_only: frozenset[str]
    positional_only: int
    accepts_any_keyword: bool
    #: False when the parameters could not be read quickly: every call goes through ``bind()``.
    quick: bool
    #: The function, with the options ``@job`` gave it (read once, here, not at every
    #: enqueue) and their queue: what its jobs share when enqueued as declared.
    spec: JobSpec
    #: Calls with no keywords and this many positional arguments bind (empty when unsure).
    plain_min: int = 1
    plain_max: int = 0

    def spec_for(self, fn: Callable[..., Any], options: JobOptions, queue: str) -> JobSpec:
        """The spec of a job calling ``fn`` with ``options`` on ``queue``: the plan's own if
        they are its, else one of the job's own (options changed for one call, say)."""
        spec = self.spec
        if _same_call(spec.fn, fn) and options is spec.options and queue == spec.queue:
            return spec
        return JobSpec(fn, self.is_async, options, queue)

    def spec_in(self, queue: str, options: JobOptions | None = None) -> JobSpec:
        """The spec of a job calling the planned function itself on ``queue``, with its
        declared options or ``options`` (a recovered or rebuilt job, found by its name)."""
        return self.spec_for(self.spec.fn, self.spec.options if options is None else options, queue)

    def __post_init__(self) -> None:
        if self.quick and not self.required_keyword_only:
            object.__setattr__(self, "plain_min", self.min_positional)
            limit = sys.maxsize if self.max_positional is None else self.max_positional
            object.__setattr__(self, "plain_max", limit)

    def check(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` naming the problem if ``fn(*args, **kwargs)`` would not bind."""
        if not kwargs and self.plain_min <= len(args) <= self.plain_max:
            return  # the common call, decided in two comparisons
        if not self.quick:
            _bind_or_raise(fn, args, kwargs, None)
            return
        problem = self.mismatch(len(args), kwargs)
        if problem is not None:
            # The verdict is ours (tested against Python's own calls); bind() only words it,
            # where it agrees: some versions' bind() accept calls that Python refuses.
            _bind_or_raise(fn, args, kwargs, problem)

    def mismatch(self, count: int, kwargs: dict[str, Any]) -> str | None:
        """Why ``count`` positional arguments and ``kwargs`` would not bind, or None if they do."""
        if self.max_positional is not None and count > self.max_positional:
            return f"too many positional arguments ({count}, at most {self.max_positional})"
        for name in kwargs:
            position = self.keyword_positions.get(name)
            if position is not None:
                if position < count:
                    return f"multiple values for argument {name!r}"
            elif name not in self.keyword_only and not self.accepts_any_keyword:
                return f"got an unexpected keyword argument {name!r}"
        for position in range(count, self.min_positional):
            name = self.positional_names[position]
            if position < self.positional_only and name in kwargs:
                return f"{name!r} is positional-only, so it cannot be passed as a keyword"
            if name not in kwargs:
                return f"missing a required positional argument: {name!r}"
        for name in sorted(self.required_keyword_only) if self.required_keyword_only else ():
            if name not in kwargs:
                return f"missing a required keyword argument: {name!r}"
        return None


def plan_call(fn: object) -> CallPlan:
    """Check that ``fn`` can be a job and return its (cached) plan; ``TypeError`` if it can't."""
    try:
        return _plans[fn]
    except KeyError:
        pass
    except TypeError:  # unhashable callable: plan it every time
        return _make_plan(fn)
    plan = _make_plan(fn)
    if len(_plans) >= _PLAN_CACHE_SIZE:
        _plans.clear()
    _plans[fn] = plan
    return plan


def _make_plan(fn: object) -> CallPlan:
    if inspect.iscoroutine(fn) or inspect.isawaitable(fn):
        _refuse_awaitable(fn)
    if not callable(fn):
        raise TypeError(
            f"a job must be a function or other callable, got {type(fn).__name__} {fn!r}: "
            f"pass the function and its arguments, as in enqueue(send_email, address)"
        )
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"{describe_callable(fn)} is a generator function: a job must return its result, "
            f"not yield values. Wrap it in a function that consumes the generator."
        )
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an instance whose __call__ is async
    )
    return _plan_parameters(fn, is_async)


def _plan_parameters(fn: object, is_async: bool) -> CallPlan:
    offset = 0
    function = fn
    if isinstance(fn, types.MethodType):
        function, offset = fn.__func__, 1
    if not isinstance(function, types.FunctionType):
        # Classes, partials, builtins, callable instances: bind() reads them correctly.
        return CallPlan(
            is_async, 0, None, {}, (), frozenset(), frozenset(), 0, True, False, _spec(fn, is_async)
        )
    code = function.__code__
    positional = code.co_varnames[: code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    defaults = len(function.__defaults__ or ())
    kw_defaults = function.__kwdefaults__ or {}
    return CallPlan(
        is_async=is_async,
        min_positional=max(0, len(positional) - defaults - offset),
        max_positional=None if code.co_flags & _VARARGS else len(positional) - offset,
        keyword_positions={
            name: index - offset
            for index, name in enumerate(positional)
            if index >= code.co_posonlyargcount
        },
        positional_names=positional[offset:],
        keyword_only=frozenset(keyword_only),
        required_keyword_only=frozenset(name for name in keyword_only if name not in kw_defaults),
        positional_only=max(0, code.co_posonlyargcount - offset),
        accepts_any_keyword=bool(code.co_flags & _VARKEYWORDS),
        quick=True,
        spec=_spec(fn, is_async),
    )


def _same_call(planned: object, fn: object) -> bool:
    # A plan is found by equality: a bound method equal to the plan's is the same call if it
    # binds the same function to the same object (`==` compares the functions by value,
    # which a callable object may define); another callable equal to it may be another call.
    if planned is fn:
        return True
    return (
        isinstance(fn, types.MethodType)
        and isinstance(planned, types.MethodType)
        and fn.__self__ is planned.__self__
        and fn.__func__ is planned.__func__
    )


def _spec(fn: object, is_async: bool) -> JobSpec:
    options = options_of(fn)
    return JobSpec(fn, is_async, options, options.queue)  # type: ignore[arg-type]


def _bind_or_raise(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], problem: str | None
) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature to check against
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            problem = str(exc)
    if problem is not None:
        raise TypeError(
            f"the arguments do not fit {describe_callable(fn)}{signature or '(...)'}: "
            f"{problem}. enqueue() passes every argument after the function to it unchanged."
        )


def _refuse_awaitable(obj: object) -> None:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    close = getattr(obj, "close", None)
    if inspect.iscoroutine(obj) and close is not None:
        close()  # it will never run: close it so Python does not warn "never awaited"
    raise TypeError(
        f"enqueue() got a coroutine object, {name}(...) already called: pass the function and "
        f"its arguments instead, as in enqueue({name}, arg) rather than enqueue({name}(arg))"
    )
