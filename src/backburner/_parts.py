"""The executor's parts: what opens, starts and closes with it, each given its collaborators.

``Backburner`` keeps its state machine and entry points; this module does the wiring of each
step of its lifecycle. ``open``: the limits' gate, the queues (local or remote), the
coordination directory, the engines and the journal (whose recovery puts unfinished jobs
back into the queues). ``start``: the queues, periodic jobs, history, yielding and the lag
monitor. ``drain`` and ``close``: the shutdown within its deadline, then the journal, the
engines and the directory. ``stats`` assembles the executor's snapshot from all of them.
The settings are read from the executor's public attributes (``Owner``) when each step
runs, as the executor read them itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._admission import Admission
from ._budget import Auto, warn_if_over_budget
from ._clock import Clock
from ._coordination import Coordination, open_coordination
from ._engines import RemoteQueue, check_overlap, close_engines, open_engines
from ._errors import NotRunning
from ._history import History
from ._job import Job
from ._journal import Journal, JournalConfig, open_journal
from ._lag import LagMonitor
from ._lookup import Lookup
from ._outcomes import Outcomes
from ._periodic import PeriodicJobs
from ._ports import Engine, Queue
from ._pressure import Yielding
from ._queue import JobQueue
from ._results import KeptResults
from ._scheduler import Scheduler
from ._settings import QueueConfig
from ._shutdown import ShutdownReport, drain, report
from ._stats import ExecutorStats, QueueStats
from ._steering import Pauses

if TYPE_CHECKING:
    from ._otel._spans import JobTelemetry

__all__ = ["Owner", "Parts"]

logger = logging.getLogger("backburner")


class Owner(Protocol):
    """The executor's settings and public parts, as they are when each step runs."""

    queue_configs: Mapping[str, QueueConfig]
    engine: Engine | None
    coordination: str | os.PathLike[str] | bool
    journal_config: JournalConfig | None
    max_scheduled: int
    scheduler: Scheduler | None
    clock: Clock
    shutdown_timeout: float
    cancel_grace: float
    server_shutdown_timeout: float | Auto
    platform_grace: float | Auto | None
    loop_lag_warning: float | None
    history: History
    yielding: Yielding
    results: KeptResults


class Parts:
    """One executor's journal, coordination directory, engines and lag monitor, and the
    wiring of its queues, periodic jobs, history and yielding into its lifecycle."""

    def __init__(
        self,
        owner: Owner,
        admission: Admission,
        outcomes: Outcomes,
        periodic: PeriodicJobs,
        lookup: Lookup,
        refusal: Callable[[], NotRunning | None],
    ) -> None:
        """``refusal()`` is why the executor accepts no job now (None: it does)."""
        self._owner = owner
        self._admission = admission
        self._outcomes = outcomes
        self._periodic = periodic
        self._lookup = lookup
        self._refusal = refusal
        #: Which queues are paused, kept across a stop and a start.
        self.pauses = Pauses(lambda: list(owner.queue_configs), self.engine_of)
        #: The journal, while it is open (``journal=``).
        self.journal: Journal | None = None
        #: This app's processes on this host (``coordination=``), while open.
        self.box: Coordination | None = None
        self._lag: LagMonitor | None = None

    def engine_of(self, queue: str) -> Engine | None:
        """The remote engine of the queue ``queue``; None: it runs its jobs here."""
        config = self._owner.queue_configs[queue]
        return config.engine if config.engine is not None else self._owner.engine

    # Opening.

    def check(self, scheduler: Scheduler) -> None:
        """A new gate for the limits; refuse periodic jobs a remote queue cannot run."""
        self._admission.open_limits(scheduler)
        check_overlap(self._periodic.specs(), self.engine_of)

    def make_queues(
        self,
        loop: asyncio.AbstractEventLoop,
        scheduler: Scheduler,
        telemetry: JobTelemetry | None,
    ) -> dict[str, Queue]:
        """A new queue for each configured one: remote if it has an engine, else local."""
        return {
            name: self._make_queue(name, config, loop, scheduler, telemetry)
            for name, config in self._owner.queue_configs.items()
        }

    def _make_queue(
        self,
        name: str,
        config: QueueConfig,
        loop: asyncio.AbstractEventLoop,
        scheduler: Scheduler,
        telemetry: JobTelemetry | None,
    ) -> Queue:
        owner = self._owner
        engine = self.engine_of(name)
        if engine is not None:
            return RemoteQueue(
                name, config.workers, config.max_pending, engine,
                host=self._outcomes, loop=loop, clock=owner.clock,
            )  # fmt: skip
        return JobQueue(
            name, config.workers, config.max_pending,
            host=self._outcomes, loop=loop, scheduler=scheduler,
            guarded=owner.journal_config is not None or telemetry is not None,
            paused=name in self.pauses.names,
            refusal=self._refusal, limits=self._admission.limits,
        )  # fmt: skip

    async def open(self, queues: Mapping[str, Queue]) -> None:
        """Open the coordination directory, the engines, then the journal (if any), whose
        unfinished jobs go back into ``queues``."""
        owner = self._owner
        config = owner.journal_config  # (a bad coordination= fails before anything)
        box = open_coordination(owner.coordination, self._periodic, config is None)
        self.box = self._admission.share_limits(box)  # (and host-scoped limits count in it)
        await open_engines(queues.values())  # a remote queue's broker connects now
        if config is None:
            return
        assert owner.scheduler is not None  # (the executor made it before its queues)
        opened = await open_journal(
            config,
            queues=queues,
            admission=self._admission,
            scheduler=owner.scheduler,
            schedule_room=lambda: owner.max_scheduled - len(owner.scheduler or ()),
            periodic=[spec for spec, _ in self._periodic.specs()],
            results=owner.results,
        )
        self.journal, self._admission.store = opened.journal, opened.store
        self._periodic.gate, self._lookup.elsewhere = opened.gate, opened.lookup

    # Running.

    def start(
        self, loop: asyncio.AbstractEventLoop, scheduler: Scheduler, queues: Mapping[str, Queue]
    ) -> None:
        """Start the queues, periodic jobs, history, yielding and the lag monitor; say so."""
        owner = self._owner
        for queue in queues.values():
            queue.start()
        self._periodic.start(scheduler)
        owner.history.start(owner.clock, loop, queues.values, owner.results.tidy)
        if self.box is not None:
            self.box.check_later(loop)
        owner.yielding.start(loop, queues.values)
        logger.info(
            "started, queues %s%s",
            ", ".join(
                f"{name} (workers={c.workers}, max_pending={c.max_pending})"
                for name, c in owner.queue_configs.items()
            ),
            self._periodic.describe(),
        )
        warn_if_over_budget(
            owner.shutdown_timeout, owner.server_shutdown_timeout, owner.platform_grace
        )
        if owner.loop_lag_warning is not None:
            self._lag = LagMonitor(loop, owner.loop_lag_warning, _running_jobs(queues))
            self._lag.start()

    def stats(self, queues: Mapping[str, Queue]) -> ExecutorStats:
        """The executor's snapshot: its open ``queues`` (else the configured ones), periodic
        jobs, journal, limits and yielding."""
        owner = self._owner
        queue_stats = [queue.stats() for queue in queues.values()] or [
            QueueStats.configured(  # never opened: the configured sizes, nothing counted
                name,
                config.workers,
                paused=name in self.pauses.names,
                engine=_engine_name(self.engine_of(name)),
            )
            for name, config in owner.queue_configs.items()
        ]
        journal = None if self.journal is None else self.journal.stats()
        limits = () if self._admission.limits is None else self._admission.limits.stats()
        yielding = owner.yielding.stats()
        return ExecutorStats.of(queue_stats, self._periodic.stats(), journal, limits, yielding)

    # Closing.

    def stop(self) -> None:
        """No more ticks, history samples or yielding: every worker back, the drain needs them."""
        self._periodic.stop()
        self._owner.history.stop()
        self._owner.yielding.stop()

    async def drain(
        self,
        queues: Sequence[Queue],
        began: float,
        deadline: float,
        wait_idle: Callable[[float | None], Awaitable[None]] | None,
    ) -> ShutdownReport:
        """Drain ``queues`` by ``deadline`` (see ``drain``); log and return the report."""
        owner = self._owner
        assert owner.scheduler is not None
        journal = self.journal
        scheduled, not_started, ran = await drain(
            queues,
            owner.scheduler,
            deadline=deadline,
            cancel_grace=owner.cancel_grace,
            wait_idle=wait_idle,
            keep_unfinished=None if journal is None else journal.keep_unfinished,
        )
        path = None if journal is None else str(journal.path)
        elapsed = asyncio.get_running_loop().time() - began
        done = report(scheduled, not_started, ran, elapsed, path)
        done.log(owner.shutdown_timeout)
        return done

    async def close(self, queues: Mapping[str, Queue], deadline: float) -> None:
        """After the drain: stop the lag monitor, close the journal, engines and directory."""
        if self._lag is not None:
            self._lag.stop()
            self._lag = None
        journal = self.journal
        if journal is not None:
            # Releases them, before the server hears we are done; within what is left of the
            # budget (and a second at least: a release is a few rows).
            await journal.close(max(1.0, deadline - asyncio.get_running_loop().time()))
            self.journal = self._admission.store = self._periodic.gate = None
            self._lookup.elsewhere = None
        await close_engines(queues.values())
        if self.box is not None:
            self.box.close()


def _running_jobs(queues: Mapping[str, Queue]) -> Callable[[], list[Job[Any]]]:
    def running_jobs() -> list[Job[Any]]:
        # Read by the lag monitor's thread: each list() is taken under the GIL in one step.
        return [job for queue in list(queues.values()) for job in queue.running_jobs()]

    return running_jobs


def _engine_name(engine: Engine | None) -> str:
    return "local" if engine is None else engine.name
