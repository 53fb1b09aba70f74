"""The executor's settings, declared once.

``BackburnerSettings`` names every keyword ``Backburner(...)`` takes; ``BackburnerMiddleware``
takes the same (``**settings: Unpack[BackburnerSettings]``), so a new setting is written here
and nowhere else. ``Settings.check`` refuses a bad value (or an unknown keyword) where it was
written, with a message that says what to give instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._budget import Auto, check_budget_setting, check_server_timeout
from ._checks import DEFAULT_QUEUE, check_count, check_queue_name, check_timeout
from ._clock import Clock, SystemClock
from ._journal import Durability, JournalConfig
from ._lag import check_lag_threshold
from ._otel import Telemetry, check_tracing
from ._outcomes import ErrorHook
from ._periodic import Periodic
from ._ports import Engine
from ._pressure import Yielding, YieldToRequests, check_yield_setting

__all__ = ["BackburnerSettings", "QueueConfig", "Settings", "check_engine"]


class BackburnerSettings(TypedDict, total=False):
    """The keywords of ``Backburner(...)`` and ``BackburnerMiddleware(app, ...)``, all optional.

    Declared here once; both take exactly these (defaults in brackets).
    """

    workers: int
    """[4] Jobs the default queue runs at once."""
    max_pending: int
    """[10,000] Jobs the default queue holds waiting; ``enqueue`` raises ``QueueFull`` past it."""
    queues: Mapping[str, QueueConfig] | None
    """More named queues, each with its own ``QueueConfig``. Naming ``"default"`` here
    replaces ``workers`` and ``max_pending``."""
    shutdown_timeout: float
    """[8] The whole budget, in seconds, of ``aclose()``: jobs get until
    ``shutdown_timeout - cancel_grace`` to finish, are then cancelled, and get the rest to
    clean up. The process exits within it whatever the jobs do, unless one blocks the event
    loop (the deadline is a timer on that loop)."""
    cancel_grace: float | None
    """The part of ``shutdown_timeout`` kept for cancelled jobs' cleanup; by default a quarter
    of it, at most one second."""
    on_error: ErrorHook | None
    """Called as ``on_error(job, exception)`` on the event loop when a job fails for good
    (after its last retry), after the failure is logged. Its own exceptions are logged and
    ignored."""
    keep_failed: int
    """[1,000] How many failed and dead jobs ``failures()`` keeps."""
    keep_results: int
    """[1,000] How many finished jobs ``lookup()`` remembers (0: none): each until
    ``result_ttl`` after it ended, then as an ``expired`` tombstone as long again; past this
    many, the oldest go first. A kept job may hold its arguments, result and error until it
    becomes a tombstone: with jobs that take or return large objects, lower it."""
    result_ttl: float
    """[600] Seconds a finished job stays findable by ``lookup()`` with its result."""
    max_result_bytes: int
    """[65,536] A return value larger than this (its pickle; a str in UTF-8, an int by its
    bytes) is not kept: the job's status is, and one WARNING per job name says so."""
    periodic: Iterable[Periodic]
    """Jobs to run on a schedule, from ``start()`` on (see ``Periodic``)."""
    max_scheduled: int
    """[100,000] How many delayed and retry-waiting jobs may wait at once;
    ``enqueue_in``/``enqueue_at`` raise ``QueueFull`` past it."""
    clock: Clock | None
    """The clock every delay, schedule, backoff and timeout reads; tests pass
    ``backburner.testing.ManualClock()`` to move time themselves."""
    loop_lag_warning: float | None
    """[None: off] Seconds; when set, a watchdog thread logs a WARNING naming the job (or task)
    that has kept the event loop from running for longer than this."""
    platform_grace: float | Auto | None
    """["auto"] Seconds the platform waits after SIGTERM before SIGKILL. If the server's
    graceful shutdown plus ``shutdown_timeout`` exceeds it, ``start()`` logs a WARNING.
    ``"auto"``: 30 on Heroku (``DYNO`` is set), else no check; None: no check."""
    server_shutdown_timeout: float | Auto
    """["auto"] Seconds the server may spend on open requests before the lifespan shutdown.
    ``"auto"``: uvicorn's ``--timeout-graceful-shutdown`` when uvicorn runs this process,
    else 0."""
    journal: str | os.PathLike[str] | JournalConfig | None
    """An SQLite file (or a ``JournalConfig``) that makes jobs durable: each is written there
    before ``enqueue`` returns, and unfinished jobs run again after a restart or a crash (at
    least once). Jobs must then be ``@job`` functions with JSON arguments."""
    durability: Durability | None
    """With ``journal``: ``"normal"`` (the default) survives the process being killed;
    ``"power"`` also survives the machine losing power, slower."""
    coordination: str | os.PathLike[str] | bool
    """[True] How the processes of this app on one host (``uvicorn --workers 3``) find each
    other without a journal: a directory (created 0700) where each periodic tick is fired by
    one process and each process says it lives. True: one derived from the app under
    ``$XDG_RUNTIME_DIR`` or the temp directory; False: none (each process fires every tick)."""
    engine: Engine | None
    """A remote engine (``backburner.taskiq.TaskiqEngine(broker)``) that every queue without an
    engine of its own (``QueueConfig(engine=...)``) sends its jobs to, to run on the engine's
    workers in other processes."""
    yield_to_requests: bool | YieldToRequests
    """[False] True (or ``YieldToRequests(target_lag=..., target_latency=..., floor=...)``):
    while requests feel the process is busy (the event loop runs late, or requests are slow
    to answer), each queue starts fewer jobs, down to ``floor``, and gets its workers back
    when the pressure goes. Running jobs are never cancelled. Needs ``BackburnerMiddleware``:
    it reports the requests, and the loop's lag counts only while requests come."""
    tracing: bool | Telemetry
    """[True] OpenTelemetry spans and metrics, when ``opentelemetry-api`` is installed
    (``backburner[otel]``): a PRODUCER span at each enqueue, a CONSUMER span per attempt,
    the executor's counters and a job-duration histogram, through the global providers (or
    those of a ``backburner.otel.Telemetry``). False: none of it, and no cost per job."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The executor's settings, checked."""

    queue_configs: Mapping[str, QueueConfig]
    shutdown_timeout: float
    cancel_grace: float
    on_error: ErrorHook | None
    keep_failed: int
    keep_results: int
    result_ttl: float
    max_result_bytes: int
    periodic: tuple[Periodic, ...]
    max_scheduled: int
    clock: Clock
    loop_lag_warning: float | None
    platform_grace: float | Auto | None
    server_shutdown_timeout: float | Auto
    journal_config: JournalConfig | None
    engine: Engine | None
    coordination: str | os.PathLike[str] | bool
    #: The controller of ``yield_to_requests``, on the executor's clock (idle when it is off).
    yielding: Yielding
    tracing: bool | Telemetry

    @classmethod
    def check(cls, given: Mapping[str, Any]) -> Settings:
        """Check ``given`` (``BackburnerSettings``): ``TypeError`` or ``ValueError`` saying why."""
        unknown = sorted(set(given) - set(BackburnerSettings.__annotations__))
        if unknown:
            raise TypeError(_unknown(unknown[0]))
        settings: dict[str, Any] = {**_DEFAULTS, **given}
        configs = _queue_configs(settings["workers"], settings["max_pending"], settings["queues"])
        shutdown_timeout = check_timeout("shutdown_timeout", settings["shutdown_timeout"])
        cancel_grace = settings["cancel_grace"]
        if cancel_grace is None:
            cancel_grace = min(1.0, shutdown_timeout / 4)
        cancel_grace = check_timeout("cancel_grace", cancel_grace)
        if cancel_grace > shutdown_timeout:
            raise ValueError(
                f"cancel_grace ({cancel_grace}s) is part of shutdown_timeout "
                f"({shutdown_timeout}s) and cannot exceed it"
            )
        on_error = settings["on_error"]
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable as on_error(job, exc), got {on_error!r}")
        if settings["keep_failed"] != 0:
            check_count(
                "keep_failed", settings["keep_failed"], "how many failed jobs failures() keeps"
            )
        check_count(
            "max_scheduled", settings["max_scheduled"], "how many jobs may wait for their time"
        )
        if settings["keep_results"] != 0:
            check_count("keep_results", settings["keep_results"], "finished jobs lookup() keeps")
        if check_timeout("result_ttl", settings["result_ttl"]) == 0:
            raise ValueError("result_ttl must be more than 0 seconds (keep_results=0 keeps none)")
        check_count("max_result_bytes", settings["max_result_bytes"], "the largest result kept")
        clock = settings["clock"]
        if clock is not None and not (
            callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_at", None))
        ):
            raise TypeError(
                f"clock must have now() and call_at(when, callback, loop), like "
                f"backburner.testing.ManualClock(); got {type(clock).__name__} {clock!r}"
            )
        clock = clock if clock is not None else SystemClock()
        engine = settings["engine"]
        check_engine(engine)
        journal = _journal_config(settings["journal"], settings["durability"])
        if journal is not None and (
            engine is not None or any(c.engine is not None for c in configs.values())
        ):
            raise ValueError(
                "journal= and a remote engine do not mix: a journaled job runs in this process, "
                "a remote one on the engine's workers (whose broker keeps it). Choose one"
            )
        return cls(
            queue_configs=configs,
            shutdown_timeout=shutdown_timeout,
            cancel_grace=cancel_grace,
            on_error=on_error,
            keep_failed=settings["keep_failed"],
            keep_results=settings["keep_results"],
            result_ttl=float(settings["result_ttl"]),
            max_result_bytes=settings["max_result_bytes"],
            periodic=tuple(settings["periodic"]),
            max_scheduled=settings["max_scheduled"],
            clock=clock,
            loop_lag_warning=check_lag_threshold(settings["loop_lag_warning"]),
            platform_grace=check_budget_setting(
                "platform_grace", settings["platform_grace"], none_allowed=True
            ),
            server_shutdown_timeout=check_server_timeout(settings["server_shutdown_timeout"]),
            journal_config=journal,
            engine=engine,
            coordination=_coordination(settings["coordination"]),
            yielding=Yielding(check_yield_setting(settings["yield_to_requests"]), clock),
            tracing=check_tracing(settings["tracing"]),
        )


_DEFAULTS: dict[str, Any] = {
    "workers": 4,
    "max_pending": 10_000,
    "queues": None,
    "shutdown_timeout": 8.0,
    "cancel_grace": None,
    "on_error": None,
    "keep_failed": 1000,
    "keep_results": 1000,
    "result_ttl": 600.0,
    "max_result_bytes": 65_536,
    "periodic": (),
    "max_scheduled": 100_000,
    "clock": None,
    "loop_lag_warning": None,
    "platform_grace": "auto",
    "server_shutdown_timeout": "auto",
    "journal": None,
    "durability": None,
    "engine": None,
    "coordination": True,
    "yield_to_requests": False,
    "tracing": True,
}


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, BackburnerSettings.__annotations__, n=1)
    hint = f": did you mean {close[0]!r}?" if close else "."
    return (
        f"backburner has no setting {name!r}{hint} The settings are "
        f"{', '.join(sorted(BackburnerSettings.__annotations__))}"
    )


def _queue_configs(workers: object, max_pending: object, queues: object) -> dict[str, QueueConfig]:
    configs = {DEFAULT_QUEUE: QueueConfig(workers=workers, max_pending=max_pending)}  # type: ignore[arg-type]
    if queues is None:
        return configs
    if not isinstance(queues, Mapping):
        raise TypeError(f"queues must map names to QueueConfig, got {type(queues).__name__}")
    for name, config in queues.items():
        check_queue_name(name)
        if not isinstance(config, QueueConfig):
            raise TypeError(
                f"queues[{name!r}] must be a QueueConfig(workers=..., max_pending=...), "
                f"got {type(config).__name__} {config!r}"
            )
        configs[name] = config
    return configs


def _coordination(given: object) -> str | os.PathLike[str] | bool:
    if isinstance(given, bool) or (isinstance(given, (str, os.PathLike)) and os.fspath(given)):
        return given
    raise TypeError(
        f"coordination must be a directory path, True (a default one) or False (none), got "
        f"{type(given).__name__} {given!r}"
    )


def _journal_config(journal: object, durability: object) -> JournalConfig | None:
    if journal is None:
        if durability is not None:
            raise ValueError("durability= applies to a journal: give journal='path/jobs.sqlite3'")
        return None
    if isinstance(journal, JournalConfig):
        if durability is not None and durability != journal.durability:
            return dataclasses.replace(journal, durability=durability)  # type: ignore[arg-type]
        return journal
    if not isinstance(journal, (str, os.PathLike)):
        raise TypeError(
            f"journal must be a file path or a JournalConfig, got {type(journal).__name__} "
            f"{journal!r}"
        )
    return JournalConfig(journal, durability=durability or "normal")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """The size of one named queue: ``workers`` jobs at once, ``max_pending`` more waiting.

    Give each kind of work its own queue so that one cannot starve another (mail must not wait
    behind image resizing)::

        Backburner(queues={"mail": QueueConfig(workers=2), "images": QueueConfig(workers=4)})

    With ``engine=`` (a ``backburner.taskiq.TaskiqEngine``) the queue's jobs are sent to that
    engine's broker and run on its workers, other processes: ``workers`` is then how many
    sends run at once and ``max_pending`` how many jobs may wait to be sent.
    """

    workers: int = 4
    max_pending: int = 10_000
    engine: Engine | None = None

    def __post_init__(self) -> None:
        check_count("workers", self.workers, "the number of jobs this queue runs at once")
        check_count("max_pending", self.max_pending, "how many jobs may wait for a worker")
        check_engine(self.engine)


def check_engine(engine: object) -> None:
    """Refuse anything but None or a remote engine (such as ``TaskiqEngine``)."""
    if engine is not None and not isinstance(engine, Engine):
        raise TypeError(
            f"engine must be a remote engine such as backburner.taskiq.TaskiqEngine(broker), "
            f"got {type(engine).__name__} {engine!r}"
        )
