"""Bad input fails at the call site with a message that says what to do; good input passes."""

from __future__ import annotations

import functools
import inspect
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backburner import Backburner, BackburnerError, QueueConfig, background
from backburner._callables import plan_call

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
            bg.enqueue(coroutine)  # type: ignore[arg-type]
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
        assert await bg.enqueue(functools.partial(send, "c"), subject="s") is None
        with pytest.raises(TypeError, match="missing a required argument: 'to'"):
            bg.enqueue(mailer.deliver)


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
