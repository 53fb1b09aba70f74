"""How a job is to be run: its queue, retries, timeout and uniqueness, and ``@job`` to say so once.

Options never travel as keywords of ``enqueue`` (those all belong to the job's function). They
come from the function (``@job(...)``), overridden per call by ``options(...)``::

    @job(queue="mail", retries=3, timeout=30, unique=lambda user_id: f"welcome:{user_id}")
    async def send_welcome(user_id: int) -> None: ...

    background.enqueue(send_welcome, 42)                    # with the options above
    background.options(retries=0).enqueue(send_welcome, 42) # this call only: no retries
"""

from __future__ import annotations

import dataclasses
import json
import random
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ._checks import DEFAULT_QUEUE, check_queue_name, check_timeout
from ._jsonargs import json_problem
from ._limitdefs import ConcurrencyLimit, Limit
from ._registry import register

__all__ = ["MAX_RETRIES", "JobOptions", "job", "options_of"]

F = TypeVar("F", bound=Callable[..., Any])

UniqueKey = str | Callable[..., str] | None

_ATTRIBUTE = "__backburner_options__"

#: The most retries a job may have: past that many failures it is failing for good.
MAX_RETRIES = 1000
#: The most characters a job's ``meta`` may take as JSON: it is kept as long as the job is.
MAX_META_CHARS = 16_384
_MAX_EXPONENT = 1000


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The options of a job, checked when made. Build with ``@job`` or ``options(...)``."""

    #: The named queue the job runs on.
    queue: str = DEFAULT_QUEUE
    #: How many times to try again after a failure, at most ``MAX_RETRIES``; 0 means a
    #: failure is final.
    retries: int = 0
    #: Retry only on these exceptions (and their subclasses); others fail at once.
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    #: Delay before the first retry, in seconds; it doubles with each attempt, up to backoff_max.
    #: (Every span of time here is at most ten years: ``MAX_SECONDS``.)
    backoff: float = 1.0
    backoff_max: float = 300.0
    #: Each delay is spread by up to this fraction either way, so retries do not stampede.
    jitter: float = 0.25
    #: Seconds an attempt may run; past it, it fails with ``JobTimeout``. None: no limit.
    timeout: float | None = None
    #: A key (or a function of the job's arguments giving one): while a job with the same key
    #: is scheduled, pending or running, enqueueing another returns the existing job.
    unique: UniqueKey = None
    #: What a duplicate gets: the existing job ("return") or a ``DuplicateJob`` error ("raise").
    on_duplicate: Literal["return", "raise"] = "return"
    #: Keep the return value for ``lookup`` once the job succeeds (its status is kept either
    #: way). False for results that must not linger in memory (secrets, large values).
    keep_result: bool = True
    #: Plain JSON data about the job, kept with it and shown by ``lookup`` (who asked for it,
    #: say, so that a status page can check who may see it). Read-only once given.
    meta: Mapping[str, Any] | None = field(default=None, hash=False)
    #: ``ConcurrencyLimit`` and ``RateLimit`` objects that hold the job until they let it
    #: start (see ``backburner.ConcurrencyLimit``). Given as any iterable, kept as a tuple.
    limits: tuple[Limit, ...] = ()
    #: Seconds (with ``unique``): the job waits this long before it runs, and another
    #: enqueue of its key meanwhile replaces its arguments and starts the wait again.
    debounce: float | None = None
    #: False: backburner's own log lines (failures, retries, the shutdown report) show the
    #: call as ``fn(...)``, never its arguments (a password, a token, personal data); the
    #: dashboard masks them all.
    log_args: bool = True
    #: Computed: the job takes the queue's guarded path (a timeout or limits to keep).
    guarded: bool = field(init=False, repr=False, compare=False)
    #: Computed: nothing to do at admission but queue it (no key, no limits).
    plain: bool = field(init=False, repr=False, compare=False)
    #: Computed: the job's one limit, a ConcurrencyLimit counted in this process, when
    #: admission has nothing else to do (no unique key, no debounce): its lean path.
    lone_limit: ConcurrencyLimit | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_limits()
        object.__setattr__(self, "guarded", self.timeout is not None or bool(self.limits))
        object.__setattr__(self, "plain", self.unique is None and not self.limits)
        object.__setattr__(self, "lone_limit", self._lone_limit())
        check_queue_name(self.queue)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"retries must be an int, got {self.retries!r}")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(
                f"retries must be from 0 to {MAX_RETRIES} (a job that failed that often is "
                f"failing for good), got {self.retries}"
            )
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in self.retry_on
        ):
            raise TypeError(f"retry_on must be a tuple of exception classes, got {self.retry_on!r}")
        check_timeout("backoff", self.backoff)
        check_timeout("backoff_max", self.backoff_max)
        jitter = check_timeout("jitter", self.jitter)
        if jitter > 1:
            raise ValueError(f"jitter is a fraction of the delay, 0 to 1, got {self.jitter}")
        if self.timeout is not None and check_timeout("timeout", self.timeout) == 0:
            raise ValueError("timeout must be more than 0 seconds (or None for no limit)")
        if self.unique is not None and not (isinstance(self.unique, str) or callable(self.unique)):
            raise TypeError(
                f"unique must be a key (str) or a function of the job's arguments returning "
                f"one, got {self.unique!r}"
            )
        if not isinstance(self.log_args, bool):
            raise TypeError(f"log_args must be True or False, got {self.log_args!r}")
        if self.on_duplicate not in ("return", "raise"):
            raise ValueError(f"on_duplicate must be 'return' or 'raise', got {self.on_duplicate!r}")
        if not isinstance(self.keep_result, bool):
            raise TypeError(f"keep_result must be True or False, got {self.keep_result!r}")
        if self.meta is not None:
            object.__setattr__(self, "meta", check_meta(self.meta))

    def _lone_limit(self) -> ConcurrencyLimit | None:
        limits = self.limits
        if len(limits) != 1 or self.unique is not None or self.debounce is not None:
            return None
        limit = limits[0]
        if isinstance(limit, ConcurrencyLimit) and limit.scope == "process":
            return limit
        return None

    def _check_limits(self) -> None:
        limits = self.limits
        if not isinstance(limits, Iterable) or isinstance(limits, (str, Limit)):
            raise TypeError(
                f"limits must be a list of ConcurrencyLimit and RateLimit objects, got {limits!r}"
            )
        limits = tuple(limits)
        for limit in limits:
            if not isinstance(limit, Limit):
                raise TypeError(
                    f"limits takes ConcurrencyLimit and RateLimit objects, got {limit!r}"
                )
        if len(set(map(id, limits))) != len(limits):
            raise ValueError(f"limits names the same limit twice: {limits!r}")
        object.__setattr__(self, "limits", limits)
        if self.debounce is not None:
            if check_timeout("debounce", self.debounce) == 0:
                raise ValueError("debounce must be more than 0 seconds (or None)")
            if self.unique is None:
                raise ValueError(
                    "debounce needs unique=: the key tells which waiting job a new enqueue "
                    "replaces (e.g. @job(unique=lambda doc_id: f'index:{doc_id}', debounce=2))"
                )

    def replace(self, **changes: Any) -> JobOptions:
        """A copy with ``changes``, checked like the original; unknown names are refused."""
        names = [f.name for f in dataclasses.fields(self) if f.init]
        unknown = set(changes) - set(names)
        if unknown:
            raise TypeError(f"unknown job option(s) {sorted(unknown)}; the options are {names}")
        return dataclasses.replace(self, **changes)

    def retry_delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before try number ``attempt + 1``, after ``attempt`` failed tries.

        ``backoff * 2 ** (attempt - 1)``, capped at ``backoff_max``, then spread by ``jitter``:
        within ``[d * (1 - jitter), d * (1 + jitter)]`` for the capped delay ``d``.
        """
        # (The exponent capped: 2.0 ** 1024 overflows; any cap past backoff_max gives the same.)
        exponent = min(max(0, attempt - 1), _MAX_EXPONENT)
        delay: float = min(self.backoff_max, self.backoff * 2.0**exponent)
        return delay * (1 + self.jitter * (2 * rand() - 1))

    def key_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """The uniqueness key of a call, or None if the job is not unique."""
        unique = self.unique
        if unique is None or isinstance(unique, str):
            return unique
        key = unique(*args, **kwargs)
        if not isinstance(key, str):
            raise TypeError(f"the unique= function must return a str, got {key!r}")
        return key


DEFAULT_OPTIONS = JobOptions()


def check_meta(meta: object) -> Mapping[str, Any]:
    """Refuse a ``meta`` that is not a small mapping of plain JSON; return a read-only copy."""
    if not isinstance(meta, Mapping):
        raise TypeError(
            f"meta must be a mapping of str keys to plain JSON values, got "
            f"{type(meta).__name__} {meta!r}"
        )
    plain = dict(meta)
    problem = json_problem(plain)
    if problem is not None:
        raise TypeError(
            f"meta must be plain JSON (str keys; str, int, finite float, bool, None, lists and "
            f"dicts of those) so that it can be shown and stored; it is {problem}"
        )
    text = json.dumps(plain, separators=(",", ":"))
    if len(text) > MAX_META_CHARS:
        raise ValueError(
            f"meta takes {len(text)} characters as JSON, more than {MAX_META_CHARS}: keep ids "
            f"in it (a user's, a tenant's), not the data itself"
        )
    # A copy the caller cannot change afterwards (a JSON round trip copies nested values too).
    return types.MappingProxyType(json.loads(text))


def job(
    *,
    queue: str = DEFAULT_QUEUE,
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    backoff: float = 1.0,
    backoff_max: float = 300.0,
    jitter: float = 0.25,
    timeout: float | None = None,
    unique: UniqueKey = None,
    on_duplicate: Literal["return", "raise"] = "return",
    keep_result: bool = True,
    limits: Iterable[Limit] = (),
    debounce: float | None = None,
    name: str | None = None,
    log_args: bool = True,
) -> Callable[[F], F]:
    """Declare a function's job options once, where it is defined.

    The function is returned unchanged (it can still be called directly); ``enqueue`` reads
    the options from it. Usable before any executor exists.

    It also registers the function by ``name`` (by default ``module:qualname``), the name a
    journal stores: a journaled executor (``Backburner(journal=...)``) runs only registered
    functions. Give ``name`` to keep it stable when the function moves or is renamed.

    ``keep_result=False``: once the job succeeds, ``lookup`` tells its status but never keeps
    its return value (for values that must not linger in memory).

    ``log_args=False`` keeps the job's arguments out of backburner's own log lines (the
    dashboard masks them too).
    """
    options = JobOptions(
        queue=queue,
        retries=retries,
        retry_on=retry_on,
        backoff=backoff,
        backoff_max=backoff_max,
        jitter=jitter,
        timeout=timeout,
        unique=unique,
        on_duplicate=on_duplicate,
        keep_result=keep_result,
        limits=limits,  # type: ignore[arg-type]  # any iterable: kept as a tuple
        debounce=debounce,
        log_args=log_args,
    )

    def attach(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@job(...) decorates a function, got {fn!r}")
        setattr(fn, _ATTRIBUTE, options)
        register(fn, name)
        return fn

    return attach


def options_of(fn: object) -> JobOptions:
    """The options ``@job`` attached to ``fn`` (through bound methods too), or the defaults."""
    options = getattr(fn, _ATTRIBUTE, None)
    return options if isinstance(options, JobOptions) else DEFAULT_OPTIONS
