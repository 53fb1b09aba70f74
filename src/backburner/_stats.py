"""Snapshots of an executor's counters, as frozen dataclasses: a leaf every layer may import."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ExecutorStats",
    "JournalStats",
    "LimitStats",
    "PeriodicStats",
    "QueueStats",
    "YieldStats",
]


@dataclass(frozen=True, slots=True)
class PeriodicStats:
    """A periodic job's schedule and record, as ``stats().periodic`` shows it."""

    name: str
    schedule: str
    queue: str
    #: Clock times (seconds since the epoch); None before the first run / after shutdown.
    next_run: float | None
    last_run: float | None
    runs: int
    #: Ticks skipped because the previous run was still going (or its queue was full).
    skipped: int
    #: The pid of the process that fired the latest tick: this one's, or (with a journal or a
    #: coordination directory) a sibling's that won it. None before any.
    fired_by: int | None = None


@dataclass(frozen=True, slots=True)
class LimitStats:
    """One ``ConcurrencyLimit`` or ``RateLimit`` as ``stats().limits`` shows it, all keys."""

    name: str
    #: "concurrency" or "rate"; "process" or "host".
    kind: str
    scope: str
    #: Jobs per key at once (concurrency), or starts per key per window (rate).
    max: int
    #: The rate window in seconds; None for a concurrency limit.
    per: float | None
    #: Concurrency: jobs holding a slot (waiting for a worker or running); rate: starts in
    #: the current window. Over every key.
    running: int
    #: Jobs the limit holds now (blocked or throttled).
    held: int
    #: Keys with something counted or held.
    keys: int
    #: Clock time the next throttled job may go (a window opens, a back-off ends); None if
    #: none waits for a time (a blocked job waits for a running one to end).
    next_free: float | None
    #: Clock time a ``Snooze(limit=...)`` holds the whole limit until; None if it does not.
    backoff_until: float | None = None


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The journal as ``stats().journal`` shows it."""

    path: str
    durability: str
    #: SQLite's ``PRAGMA synchronous`` on the connection: 1 (NORMAL) or 2 (FULL).
    synchronous: int
    #: This process's owner id (host:pid:nonce).
    owner: str
    #: Jobs accepted but not yet committed: what a crash now would lose of enqueues that
    #: have not returned yet (a returned enqueue is always committed).
    lag: int
    #: Rows by state (queued, running, succeeded, ...), counted at open and every minute.
    rows: dict[str, int]
    #: Why the journal stopped writing (its file was deleted or replaced, its writer
    #: failed): it accepts no more jobs. None while it works.
    problem: str | None = None

    @property
    def healthy(self) -> bool:
        """True while the journal accepts and writes jobs (``problem`` is None)."""
        return self.problem is None


@dataclass(frozen=True, slots=True)
class YieldStats:
    """Yielding to requests as ``stats().yielding`` shows it (``yield_to_requests=True``)."""

    #: "calm" (every queue has all its workers), "yielding" (requests were pressed within
    #: the last second: fewer jobs start) or "recovering" (workers come back one at a time).
    state: str
    #: The last decision's signal, as a multiple of its target: past 1.0, fewer jobs start.
    pressure: float
    #: Seconds: the worst loop lag, and the mean time requests took to their response's
    #: start (None: no request was answered), over the last decision's interval.
    lag: float
    latency: float | None
    #: Each local queue's effective workers: how many of its jobs may run at once now.
    effective_workers: Mapping[str, int]
    target_lag: float
    target_latency: float | None
    floor: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's counters at one moment (like ``SuckerPunch::Queue.stats``)."""

    name: str
    #: Worker slots, and how many are running a job / free.
    workers: int
    busy: int
    idle: int
    #: Jobs accepted and waiting for a free worker, ``held`` ones included.
    pending: int
    #: Jobs waiting for their time: delayed ones, and failed ones waiting to retry.
    scheduled: int
    #: Jobs that ran to an end, successful or not; ``failed`` of them raised.
    processed: int
    failed: int
    #: Jobs cancelled before or while running (by ``job.cancel()`` or by shutdown).
    cancelled: int
    #: Jobs that failed on every attempt their retries allowed.
    dead: int
    #: True while ``Backburner.pause(name)`` holds the queue: it accepts jobs, starts none.
    paused: bool = False
    #: "local" for a queue run by this process; else the remote engine its jobs are sent to,
    #: whose workers run them (their outcome is not counted here: see the engine's tools).
    engine: str = "local"
    #: For a remote queue: jobs accepted, handed to the broker, and given up after failed sends.
    enqueued: int = 0
    sent: int = 0
    send_failed: int = 0
    #: Of the pending jobs, those a limit holds (blocked or throttled): they hold no worker.
    held: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def configured(cls, name: str, workers: int, *, paused: bool, engine: str) -> QueueStats:
        """A queue not open yet: its configured size, nothing counted."""
        return cls(name, workers, 0, workers, 0, 0, 0, 0, 0, 0, paused=paused, engine=engine)


@dataclass(frozen=True, slots=True)
class ExecutorStats:
    """Every queue's counters, and their sum under the name ``"total"``."""

    queues: Mapping[str, QueueStats]
    total: QueueStats
    #: Each periodic job's schedule, next and last run.
    periodic: tuple[PeriodicStats, ...] = ()
    #: The journal's lag and rows, for an executor with ``journal=``; else None.
    journal: JournalStats | None = None
    #: Each limit the executor's jobs have used: its running, held and next free slot.
    limits: tuple[LimitStats, ...] = ()
    #: Yielding to requests, for an executor with ``yield_to_requests``; else None.
    yielding: YieldStats | None = None

    @classmethod
    def of(
        cls,
        queues: list[QueueStats],
        periodic: tuple[PeriodicStats, ...] = (),
        journal: JournalStats | None = None,
        limits: tuple[LimitStats, ...] = (),
        yielding: YieldStats | None = None,
    ) -> ExecutorStats:
        """Sum the queues' snapshots into a total; the journal's and the limits' beside."""
        fields = (
            "workers",
            "busy",
            "idle",
            "pending",
            "scheduled",
            "processed",
            "failed",
            "cancelled",
            "dead",
            "enqueued",
            "sent",
            "send_failed",
            "held",
        )
        sums = {field: sum(getattr(q, field) for q in queues) for field in fields}
        return cls(
            queues={q.name: q for q in queues},
            total=QueueStats(name="total", engine=_engines(queues), **sums),
            periodic=periodic,
            journal=journal,
            limits=limits,
            yielding=yielding,
        )

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict: ``queues``, ``total``, ``periodic``, ``journal``
        and ``yielding``."""
        return {
            "queues": {name: q.as_dict() for name, q in self.queues.items()},
            "total": self.total.as_dict(),
            "periodic": [dataclasses.asdict(p) for p in self.periodic],
            "journal": None if self.journal is None else dataclasses.asdict(self.journal),
            "limits": [dataclasses.asdict(limit) for limit in self.limits],
            "yielding": None if self.yielding is None else dataclasses.asdict(self.yielding),
        }


def _engines(queues: list[QueueStats]) -> str:
    names = sorted({q.engine for q in queues})
    return " + ".join(names) if names else "local"
