"""Jobs registered by name: what a journal (or any out-of-process engine) can store and find again.

A journal cannot store a function, only its name. ``@job(name="send_welcome")`` (or plain
``@job()`` on a module-level function, named ``module:qualname``) records ``name -> function``
here, at import time. A recovered job is looked up by that name; a name that is not registered
is never imported or run. The registry knows nothing of executors or engines.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["RegisteredJob", "default_name", "lookup", "name_of", "register", "registered"]

_NAME_ATTRIBUTE = "__backburner_name__"


@dataclass(frozen=True, slots=True)
class RegisteredJob:
    """One registered job: its stable name and its function."""

    name: str
    fn: Callable[..., Any]


_lock = threading.Lock()
_by_name: dict[str, RegisteredJob] = {}


def default_name(fn: Callable[..., Any]) -> str | None:
    """``module:qualname`` for a function another process can import, else None.

    Lambdas and functions defined inside other functions have no such name: their code is only
    reachable through the object, which dies with the process.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if "<" in qualname:  # <lambda>, <locals>
        return None
    return f"{module}:{qualname}"


def register(fn: Callable[..., Any], name: str | None) -> str | None:
    """Register ``fn`` under ``name`` (or its default name); return the name, None if it has none.

    Raises ``ValueError`` if another function already holds the name. Registering a function
    again under its name is allowed: a module imported twice (a reload) replaces its own entry.
    """
    if name is None:
        name = default_name(fn)
        if name is None:
            return None
    elif not isinstance(name, str) or not name.strip():
        raise TypeError(f"a job's name must be a non-empty str, got {name!r}")
    with _lock:
        held = _by_name.get(name)
        if held is not None and held.fn is not fn and not _same_definition(held.fn, fn):
            raise ValueError(
                f"the job name {name!r} is already registered for {_describe(held.fn)}; "
                f"give {_describe(fn)} another name with @job(name=...)"
            )
        _by_name[name] = RegisteredJob(name, fn)
    with contextlib.suppress(AttributeError, TypeError):  # a builtin: found by lookup only
        setattr(fn, _NAME_ATTRIBUTE, name)
    return name


def lookup(name: str) -> RegisteredJob | None:
    """The job registered under ``name``, or None."""
    return _by_name.get(name)


def registered() -> list[RegisteredJob]:
    """Every job registered so far (a remote engine's workers register them all as tasks)."""
    with _lock:
        return list(_by_name.values())


def name_of(fn: object) -> str | None:
    """The name ``fn`` is registered under, if it is registered (itself, not a copy)."""
    name = getattr(fn, _NAME_ATTRIBUTE, None)
    if isinstance(name, str):
        entry = _by_name.get(name)
        if entry is not None and entry.fn is fn:
            return name
    return None


def _same_definition(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    # The same module-level function, defined again: a module imported twice, or reloaded.
    old_name = default_name(old)
    return old_name is not None and old_name == default_name(new)


def _describe(fn: object) -> str:
    return default_name(fn) or repr(fn)  # type: ignore[arg-type]
