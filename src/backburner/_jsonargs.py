"""Is a job's call plain JSON? The check every out-of-process store of jobs makes at enqueue.

A journal (``_journal/_store.py``) and a remote engine (``_engines/_remote.py``) both keep a
job as its registered name and its arguments in JSON, so an argument that would not come back
from JSON as it went in (a tuple, a ``datetime``, a model object, ``nan``) must fail at
``enqueue``, naming the argument, not at recovery or on a worker in another process.

"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_json_arguments", "json_problem"]

_SCALARS = frozenset({str, int, bool, type(None)})
_MAX_DEPTH = 100


def check_json_arguments(
    label: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None, store: str
) -> None:
    """Raise ``TypeError`` naming the first argument of ``label`` that is not plain JSON.

    ``store`` says who needs JSON and what it does, for the message: ``"A journal stores"``,
    ``"taskiq (...) sends"``.
    """
    for index, value in enumerate(args):
        problem = json_problem(value)
        if problem is not None:
            raise TypeError(_message(label, f"argument {index + 1}", problem, store))
    for key, value in (kwargs or {}).items():
        problem = json_problem(value)
        if problem is not None:
            raise TypeError(_message(label, f"keyword argument {key!r}", problem, store))


def _message(label: str, where: str, problem: str, store: str) -> str:
    return (
        f"{where} of {label} is {problem}. {store} arguments as JSON: str, int, float "
        f"(finite), bool, None, and lists and dicts with str keys of those. Pass plain data "
        f"instead (an id to look the object up by, a dict of its fields)"
    )


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` would not come back from JSON as it went in, or None if it would."""
    kind = type(value)
    if kind in _SCALARS:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"the float {value!r} (JSON has no such number)"
    if depth > _MAX_DEPTH:
        return "nested too deeply"
    if kind is list:
        for index, item in enumerate(value):
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return f"a list whose item {index} is {problem}"
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"a dict with the {type(key).__name__} key {key!r} (JSON keys are str)"
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return f"a dict whose item {key!r} is {problem}"
        return None
    if kind is tuple:
        return f"a tuple {_short(value)} (it would come back a list: pass a list)"
    return f"a {kind.__name__} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
