"""Bad input fails at the call site with a message that says what to do; good input passes."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import string
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backburner import Backburner, BackburnerError, JobOptions, QueueConfig, background
from backburner._callables import plan_call
from backburner._checks import MAX_SECONDS
from backburner._options import MAX_RETRIES
from backburner.testing import ManualClock

pytestmark = pytest.mark.anyio


async def send(to: str, subject: str = "hi", *, urgent: bool = False) -> None:
    pass


def posonly(a: int, /, b: int, *args: int, c: int, **kwargs: int) -> None:
    pass


class Mailer:
    def deliver(self, to: str) -> str:
        return to

    async def __call__(self, to: str) -> str:
        return to


async def test_a_coroutine_object_is_refused_with_pass_the_function_and_its_arguments() -> None:
    async with Backburner() as bg:
        coroutine = send("a@example.com")
        with pytest.raises(TypeError, match=r"pass the function and its arguments"):
            bg.enqueue(coroutine)  # type: ignore[call-overload]
    # closed for us: no "coroutine was never awaited" warning (warnings are errors here)
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "message"),
    [
        (42, (), {}, r"must be a function or other callable, got int"),
        (send, (), {}, r"missing a required argument: 'to'"),
        (send, ("a", "b", "c"), {}, r"too many positional arguments"),
        (send, ("a",), {"to": "b"}, r"multiple values for argument 'to'"),
        (send, ("a",), {"colour": "red"}, r"unexpected keyword argument 'colour'"),
        (posonly, (), {"a": 1, "b": 2, "c": 3}, r"'a' (parameter )?is positional.only"),
        (posonly, (1, 2), {}, r"missing a required argument: 'c'"),
    ],
)
async def test_calls_that_would_not_bind_are_refused_naming_the_problem(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    async with Backburner() as bg:
        with pytest.raises(TypeError, match=message):
            bg.enqueue(fn, *args, **kwargs)
        assert bg.stats().total.pending == 0  # nothing half-accepted


async def test_generator_functions_are_refused() -> None:
    def numbers() -> Any:
        yield 1

    async with Backburner() as bg:
        with pytest.raises(TypeError, match="generator function"):
            bg.enqueue(numbers)


async def test_an_unknown_queue_is_refused_listing_the_known_ones() -> None:
    async with Backburner(queues={"mail": QueueConfig()}) as bg:
        with pytest.raises(ValueError, match=r"no queue named 'mial'.*\['default', 'mail'\]"):
            bg.options(queue="mial").enqueue(send, "a")


async def test_argument_names_that_look_like_options_reach_the_function() -> None:
    def configure(queue: str, workers: int, timeout: float, fn: str) -> tuple[Any, ...]:
        return queue, workers, timeout, fn

    async with Backburner() as bg:
        job = bg.enqueue(configure, queue="q", workers=3, timeout=1.5, fn="f")
        assert await job == ("q", 3, 1.5, "f")


async def test_methods_partials_and_callable_objects_are_jobs_too() -> None:
    mailer = Mailer()
    async with Backburner() as bg:
        assert await bg.enqueue(mailer.deliver, "a") == "a"
        assert await bg.enqueue(mailer, "b") == "b"  # async __call__ runs on the loop
        to_c = functools.partial(send, "c")
        # send returns None, and that None is what this checks.
        assert await bg.enqueue(to_c, subject="s") is None  # type: ignore[func-returns-value]
        with pytest.raises(TypeError, match="missing a required argument: 'to'"):
            bg.enqueue(mailer.deliver)  # type: ignore[call-overload]


class _Labelled:
    """A callable wrapper equal to any other wrapping the same function (as some decorators
    are): two of them differ, yet compare equal."""

    def __init__(self, fn: Callable[[object, int], int], label: str) -> None:
        self.fn, self.label = fn, label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Labelled) and other.fn is self.fn

    def __hash__(self) -> int:
        return hash(self.fn)

    def __call__(self, owner: object, x: int) -> str:
        return f"{self.label}:{self.fn(owner, x)}"


def _double(owner: object, x: int) -> int:
    return 2 * x


async def test_each_job_calls_its_own_callable_even_one_equal_to_another() -> None:
    # Jobs of equal callables share what was read of their signature, never the callable:
    # bound methods, callable objects and methods whose functions compare equal by value.
    owner, other_owner = Mailer(), Mailer()
    first = types.MethodType(_Labelled(_double, "first"), owner)
    second = types.MethodType(_Labelled(_double, "second"), owner)
    assert first == second
    async with Backburner() as bg:
        jobs = [bg.enqueue(f, 1) for f in (first, second)]
        assert [await j for j in jobs] == ["first:2", "second:2"]
        assert jobs[1].fn is second
        deliveries = [bg.enqueue(m.deliver, "a") for m in (owner, other_owner)]
        assert [j.fn.__self__ for j in deliveries] == [owner, other_owner]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"workers": 0}, r"workers must be at least 1"),
        ({"workers": -3}, r"workers must be at least 1"),
        ({"workers": 2.5}, r"workers must be an int"),
        ({"workers": True}, r"workers must be an int"),
        ({"max_pending": 0}, r"max_pending must be at least 1"),
        ({"shutdown_timeout": -1}, r"shutdown_timeout must be a finite number of seconds"),
        ({"shutdown_timeout": float("inf")}, r"shutdown_timeout must be a finite number"),
        ({"shutdown_timeout": "8"}, r"shutdown_timeout must be a number of seconds"),
        ({"cancel_grace": -0.5}, r"cancel_grace must be a finite number"),
        ({"shutdown_timeout": 1, "cancel_grace": 2}, r"cancel_grace .* cannot exceed it"),
        ({"queues": {"mail": {"workers": 2}}}, r"queues\['mail'\] must be a QueueConfig"),
        ({"queues": {"": QueueConfig()}}, r"queue name must be a non-empty str"),
        ({"queues": ["mail"]}, r"queues must map names to QueueConfig"),
        ({"on_error": "log"}, r"on_error must be callable"),
        ({"keep_failed": -1}, r"keep_failed must be at least 1"),
        ({"clock": 5}, r"clock must have now\(\) and call_at"),
    ],
)
def test_bad_settings_are_refused_when_written(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Backburner(**settings_)


def test_queue_config_checks_its_own_values() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        QueueConfig(workers=0)


# The quick argument check must agree with Python itself on every call shape. (Not with
# inspect's bind(), which on 3.11 refuses f(a=0) for def f(a=0, /, **kwargs): a valid call.)

_names = st.sampled_from(list("abcdef"))


@st.composite
def functions(draw: st.DrawFn) -> Callable[..., Any]:
    names = draw(st.lists(_names, unique=True, max_size=5))
    kinds = [draw(st.sampled_from(["posonly", "normal", "kwonly"])) for _ in names]
    kinds.sort(key=["posonly", "normal", "kwonly"].index)
    has_default = [draw(st.booleans()) for _ in names]
    parts: list[str] = []
    seen_default = False
    for kind, name, default in zip(kinds, names, has_default, strict=True):
        if kind != "kwonly":
            default = default or seen_default  # a default forces defaults after it
            seen_default = seen_default or default
        parts.append(f"{name}=0" if default else name)
    posonly = [p for p, k in zip(parts, kinds, strict=True) if k == "posonly"]
    normal = [p for p, k in zip(parts, kinds, strict=True) if k == "normal"]
    kwonly = [p for p, k in zip(parts, kinds, strict=True) if k == "kwonly"]
    params = [*posonly, *(["/"] if posonly else []), *normal]
    if draw(st.booleans()):
        params.append("*args")
    elif kwonly:
        params.append("*")
    params += kwonly
    if draw(st.booleans()):
        params.append("**kwargs")
    namespace: dict[str, Any] = {}
    exec(f"def f({', '.join(params)}): pass", namespace)
    return namespace["f"]  # type: ignore[no-any-return]


@settings(max_examples=400, deadline=None)
@given(
    fn=functions(),
    count=st.integers(0, 6),
    keywords=st.lists(st.sampled_from(list("abcdefgh")), unique=True, max_size=4),
)
def test_the_quick_check_agrees_with_python_on_whether_a_call_binds(
    fn: Callable[..., Any], count: int, keywords: list[str]
) -> None:
    args = tuple(range(count))
    kwargs = dict.fromkeys(keywords, 0)
    try:
        fn(*args, **kwargs)  # the body is `pass`: only binding can raise
        binds = True
    except TypeError:
        binds = False
    plan = plan_call(fn)
    assert plan.quick
    assert (plan.mismatch(count, kwargs) is None) == binds, inspect.signature(fn)


@settings(max_examples=200, deadline=None)
@given(
    name=st.one_of(st.none(), st.text(string.printable, max_size=8)),
    value=st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
)
def test_any_bad_setting_raises_a_type_or_value_error_with_a_message(
    name: str | None, value: Any
) -> None:
    messages: list[str] = []
    attempts: list[dict[str, Any]] = [
        {key: value}
        for key in ("workers", "max_pending", "shutdown_timeout", "cancel_grace", "keep_failed")
    ]
    attempts.append({"queues": {name: QueueConfig()}})
    for attempt in attempts:
        try:
            Backburner(**attempt)
        except (TypeError, ValueError) as exc:
            messages.append(str(exc))
    assert all(messages)  # every refusal says why; anything else was accepted as valid


async def test_background_outside_any_app_says_how_to_get_an_executor() -> None:
    with pytest.raises(BackburnerError, match="no backburner executor is running"):
        background.enqueue(send, "a")


# Fuzzing: any call, any setting. Every refusal is a BackburnerError, TypeError or ValueError
# with a message, and the executor it was made against still runs a good job afterwards.

REFUSALS = (BackburnerError, TypeError, ValueError)

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=2),
    st.tuples(st.sampled_from([ValueError, KeyError, int, "x"])),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.timedeltas(),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-5))])),
    st.sampled_from([len, print, QueueConfig(), object()]),
)


async def add(a: int, b: int = 1) -> int:
    return a + b


def add_in_thread(a: int, b: int = 1) -> int:
    return a + b


_settings = st.sampled_from(
    [
        "workers",
        "max_pending",
        "queues",
        "shutdown_timeout",
        "cancel_grace",
        "on_error",
        "keep_failed",
        "periodic",
        "max_scheduled",
        "clock",
        "loop_lag_warning",
        "platform_grace",
        "server_shutdown_timeout",
    ]
)
_option_names = st.sampled_from(
    [
        "queue",
        "retries",
        "retry_on",
        "backoff",
        "backoff_max",
        "jitter",
        "timeout",
        "unique",
        "on_duplicate",
    ]
)


def _refused_with_a_message(exc: BaseException) -> None:
    assert isinstance(exc, REFUSALS), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_settings, _junk, max_size=3))
def test_any_settings_are_accepted_or_refused_with_a_message(kwargs: dict[str, Any]) -> None:
    try:
        bg = Backburner(**kwargs)
    except Exception as exc:
        _refused_with_a_message(exc)
    else:  # accepted: then it works
        asyncio.run(_run_a_good_job(bg))
    try:
        QueueConfig(**{k: v for k, v in kwargs.items() if k in ("workers", "max_pending")})
    except Exception as exc:
        _refused_with_a_message(exc)


_calls = st.one_of(
    st.tuples(
        st.just("enqueue"),
        st.one_of(st.sampled_from([add, add_in_thread]), _junk),
        st.lists(_junk, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), _junk, max_size=2),
    ),
    st.tuples(st.just("options"), st.dictionaries(_option_names, _junk, max_size=3)),
    st.tuples(st.just("enqueue_in"), _junk),
    st.tuples(st.just("enqueue_at"), _junk),
)


async def _run_a_good_job(bg: Backburner) -> None:
    async with bg:
        assert await bg.enqueue(add, 2, 3) == 5
        assert await bg.enqueue_in(0, add_in_thread, 2, 3) == 5  # through the clock


async def _call_then_run_a_good_job(call: tuple[Any, ...]) -> None:
    async with Backburner(workers=2, shutdown_timeout=0.5) as bg:
        try:
            if call[0] == "enqueue":
                bg.enqueue(call[1], *call[2], **call[3])
            elif call[0] == "options":
                bg.options(**call[1]).enqueue(add, 1)
            elif call[0] == "enqueue_in":
                bg.enqueue_in(call[1], add, 1)
            else:
                bg.enqueue_at(call[1], add, 1)
        except Exception as exc:
            _refused_with_a_message(exc)
        assert await bg.enqueue(add, 2, 3) == 5
        assert await bg.enqueue(add_in_thread, 2, 3) == 5


@settings(max_examples=300, deadline=None)
@given(_calls)
def test_any_call_is_accepted_or_refused_with_a_message_and_the_executor_keeps_working(
    call: tuple[Any, ...],
) -> None:
    logger = logging.getLogger("backburner")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # accepted calls of the wrong types fail in the job: fine
    try:
        asyncio.run(_call_then_run_a_good_job(call))
    finally:
        logger.setLevel(level)


# Bounds: spans of time up to ten years (MAX_SECONDS), up to 1,000 retries. Past them is a
# mistake (a unit mixed up, 1e300), refused with a ValueError that names the limit.

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.sampled_from([MAX_SECONDS, MAX_SECONDS + 1, 1e300, 10**18]),
)


def _in_bounds(value: float, low: float = 0) -> bool:
    return math.isfinite(value) and low <= value <= MAX_SECONDS


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["timeout", "backoff", "backoff_max"]), value=_numbers)
def test_spans_of_time_in_job_options_are_bounded_to_ten_years(name: str, value: float) -> None:
    if _in_bounds(value) and not (name == "timeout" and value == 0):
        JobOptions().replace(**{name: value})
    elif math.isfinite(value) and value > MAX_SECONDS:
        with pytest.raises(ValueError, match=rf"{name} must be at most {MAX_SECONDS} seconds"):
            JobOptions().replace(**{name: value})
    else:
        with pytest.raises(ValueError, match=rf"{name} must be"):
            JobOptions().replace(**{name: value})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.sampled_from([MAX_RETRIES, MAX_RETRIES + 1, 10**18])))
def test_retries_are_bounded_to_a_thousand(retries: int) -> None:
    if 0 <= retries <= MAX_RETRIES:
        assert JobOptions(retries=retries).retries == retries
    else:
        with pytest.raises(ValueError, match=rf"retries must be from 0 to {MAX_RETRIES}"):
            JobOptions(retries=retries)


@given(attempt=st.integers(1, 10**9), backoff=st.floats(0, MAX_SECONDS))
def test_a_retry_delay_never_overflows_whatever_the_attempt(attempt: int, backoff: float) -> None:
    options = JobOptions(backoff=backoff, backoff_max=MAX_SECONDS, jitter=0)
    assert 0 <= options.retry_delay(attempt) <= MAX_SECONDS


async def _refusals(call: Callable[[Backburner, Any], object], values: list[Any]) -> list[str]:
    """For each value, ``call(bg, value)``'s ValueError message, or "" if it was accepted."""
    refusals = []
    async with Backburner(clock=ManualClock(), shutdown_timeout=0.1) as bg:
        for value in values:
            try:
                call(bg, value)
            except ValueError as exc:
                refusals.append(str(exc))
            else:
                refusals.append("")
    return refusals


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(_numbers, st.timedeltas()), min_size=1, max_size=20))
def test_enqueue_in_takes_delays_up_to_ten_years(delays: list[Any]) -> None:
    refusals = asyncio.run(_refusals(lambda bg, delay: bg.enqueue_in(delay, add, 1), delays))
    for delay, refusal in zip(delays, refusals, strict=True):
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if _in_bounds(seconds):
            assert not refusal
        elif math.isfinite(seconds) and seconds > MAX_SECONDS:
            assert f"delay must be at most {MAX_SECONDS} seconds (ten years)" in refusal
        else:
            assert "delay must be a finite number of seconds, 0 or more" in refusal


@settings(max_examples=100, deadline=None)
@given(st.lists(st.datetimes(timezones=st.just(timezone.utc)), min_size=1, max_size=20))
def test_enqueue_at_takes_times_up_to_ten_years_ahead(times: list[datetime]) -> None:
    refusals = asyncio.run(_refusals(lambda bg, when: bg.enqueue_at(when, add, 1), times))
    now = ManualClock().now()  # where every ManualClock starts
    for when, refusal in zip(times, refusals, strict=True):
        if when.timestamp() - now <= MAX_SECONDS:
            assert not refusal
        else:
            assert f"at most {MAX_SECONDS} seconds (ten years) ahead" in refusal
