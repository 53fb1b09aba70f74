"""What a limit is, as the user declares it: ``ConcurrencyLimit``, ``RateLimit``, ``Snooze``.

Plain values, checked when made: ``@job(limits=[...])`` holds them, ``_limits.Limits`` (the
mechanism) keeps their counts. A leaf, so that the job's options may name them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from ._checks import MAX_SECONDS

__all__ = ["ConcurrencyLimit", "Limit", "LimitTicket", "RateLimit", "Snooze"]

#: A limit's key: a fixed str, a function of the job's arguments giving one, or None (one
#: bucket for every job the limit is given to).
LimitKey = str | Callable[..., str | None] | None
Scope = Literal["process", "host"]


class Limit:
    """What ``ConcurrencyLimit`` and ``RateLimit`` share: a name, a key, a scope."""

    __slots__ = ("key", "name", "scope")

    kind = "limit"

    def __init__(self, key: LimitKey, name: str | None, scope: Scope) -> None:
        if key is not None and not (isinstance(key, str) or callable(key)):
            raise TypeError(
                f"key must be a str, a function of the job's arguments returning one, or "
                f"None, got {key!r}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        if scope not in ("process", "host"):
            raise ValueError(f"scope must be 'process' or 'host', got {scope!r}")
        # (A str key is kept as a plain str: `key_for` tells it from a function by its class.
        # `str.__str__`, not `str()`: a str subclass's own `__str__` (a str Enum's gives
        # "Region.EU") must not change the key's value.)
        self.key = str.__str__(key) if isinstance(key, str) else key
        #: The name stats and the dashboard show; by default made from the limit's numbers.
        self.name = name if name is not None else self._default_name()
        #: "process": counted in this process; "host": across the app's processes on this
        #: host, in their coordination directory (found there by ``name``: see ``_hostlimits``).
        self.scope = scope

    def _default_name(self) -> str:
        raise NotImplementedError

    def key_for(self, fn: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """The bucket of a call: the key, or what the key function returns for the call.

        Raises ``TypeError`` naming the limit if the key function fails or returns neither a
        str nor None: at the call site, where the arguments are.
        """
        key = self.key
        if key is None or key.__class__ is str:  # (classes, not isinstance: every limited job)
            return key
        try:
            value = key(*args, **kwargs) if kwargs else key(*args)  # type: ignore[operator]
        except Exception as exc:
            raise TypeError(
                f"the key function of limit {self.name!r} failed for {_name(fn)}: "
                f"{type(exc).__name__}: {exc}; it is called with the job's arguments"
            ) from exc
        if value.__class__ is str or value is None or isinstance(value, str):
            return value
        raise TypeError(
            f"the key function of limit {self.name!r} must return a str (or None), got "
            f"{value!r} for {_name(fn)}"
        )


def _name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


class ConcurrencyLimit(Limit):
    """At most ``max`` jobs with the same key run at once (and wait for a worker).

    ``key``: a str, a function of the job's arguments returning the key (None joins the one
    shared bucket), or None: one bucket for every job given this object. The same object on
    several ``@job``s is one budget. A job held by its limit is ``blocked`` and holds no
    worker: other jobs run past it; held jobs start in the order they were enqueued.
    ``scope="host"`` counts across the app's processes on this host (give it a ``name``
    every process shares: they find its counts by it).
    """

    __slots__ = ("max",)

    kind = "concurrency"

    def __init__(
        self,
        max: int,
        key: LimitKey = None,
        name: str | None = None,
        *,
        scope: Scope = "process",
    ) -> None:
        if isinstance(max, bool) or not isinstance(max, int):
            raise TypeError(f"max must be an int, got {max!r}")
        if max < 1:
            raise ValueError(f"max must be 1 or more (jobs running at once per key), got {max}")
        self.max = max
        super().__init__(key, name, scope)

    def _default_name(self) -> str:
        return f"concurrency({self.max})"

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.max}, key={self.key!r}, name={self.name!r})"


class RateLimit(Limit):
    """At most ``limit`` starts per ``per`` seconds (a sliding window), per key.

    A job over the limit is ``throttled``: it waits in the scheduler, holding no worker, and
    goes to its queue when the window has room (a start is counted when it goes there). The
    same object on several ``@job``s is one budget (one upstream API, say); with
    ``scope="host"``, one budget for every process of the app on this host.
    """

    __slots__ = ("limit", "per")

    kind = "rate"

    def __init__(
        self,
        limit: int,
        per: float,
        key: LimitKey = None,
        name: str | None = None,
        *,
        scope: Scope = "process",
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, got {limit!r}")
        if limit < 1:
            raise ValueError(f"limit must be 1 or more (starts per window), got {limit}")
        if isinstance(per, bool) or not isinstance(per, (int, float)):
            raise TypeError(f"per must be seconds (a number), got {per!r}")
        if not (math.isfinite(per) and 0 < per <= MAX_SECONDS):
            raise ValueError(f"per must be more than 0 seconds, at most ten years, got {per!r}")
        self.limit = limit
        self.per = float(per)
        super().__init__(key, name, scope)

    def _default_name(self) -> str:
        return f"rate({self.limit}/{self.per:g}s)"

    def __repr__(self) -> str:
        return f"RateLimit({self.limit}, per={self.per:g}, key={self.key!r}, name={self.name!r})"


class Snooze(Exception):
    """Raised inside a job: run it again in ``seconds``, without counting a failed attempt.

    For an upstream that answered 429 with ``Retry-After``. With ``limit=`` (a limit the job
    has, or any other), the whole limit backs off that long: no job it holds starts before.
    """

    def __init__(self, seconds: float, limit: Limit | None = None) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"Snooze(seconds): seconds must be a number, got {seconds!r}")
        if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
            raise ValueError(f"Snooze(seconds): 0 to ten years, got {seconds!r}")
        if limit is not None and not isinstance(limit, Limit):
            raise TypeError(f"Snooze(limit=): a ConcurrencyLimit or RateLimit, got {limit!r}")
        super().__init__(seconds, limit)
        self.seconds = float(seconds)
        self.limit = limit

    def __str__(self) -> str:
        return f"snoozed for {self.seconds:g}s" + (
            "" if self.limit is None else f" (limit {self.limit.name!r} backs off)"
        )


class LimitTicket:
    """A limited job's part in its limits: its keys, the limit holding it, its tokens.

    Made at admission (the keys are computed there, from the job's arguments); read and
    written by ``_limits.Limits`` under its lock.
    """

    __slots__ = ("admit", "held_by", "holding", "keys", "reserved", "seq")

    def __init__(
        self, keys: tuple[str | None, ...], admit: Callable[[Any], None], seq: int
    ) -> None:
        #: One key per limit of ``job.options.limits``, in that order.
        self.keys = keys
        #: Hands the job to its queue's workers once its limits let it go.
        self.admit = admit
        #: The limit holding the job now (blocked or throttled), or None.
        self.held_by: Limit | None = None
        #: True while the job counts against its limits (from release to its attempt's end).
        self.holding = False
        #: The rate windows' entries this job holds until it starts (``_limits``).
        self.reserved: list[Any] | tuple[()] = ()
        #: Its place in line: the gate's count of entries when it last came to the gate.
        self.seq = seq
