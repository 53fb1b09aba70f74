"""Liveness and readiness probes: ``health_app()``, an ASGI app to mount outside any auth.

::

    app.mount("/health", health_app(bg))     # GET /health/live, GET /health/ready

``GET /live`` answers 503 when something died that only a restart brings back: a queue's
worker ended (a remote queue's sender task; a local queue has no long-lived worker to lose:
each job is a task of its own), the journal's writer stopped (or its file went away), the
scheduler fell behind its own timers, or the event loop was blocked past ``max_loop_block``
within the last minute. ``GET /ready`` answers 503 when this process should get no traffic
for now: the executor is starting or shutting down
(from the moment the drain begins), the journal cannot be written or lags, a queue has had
waiting jobs but started none for ``stall_after`` seconds (jobs a limit holds do not count);
and whenever ``/live`` would.

The body is JSON naming each check, ``ok`` or ``failing`` with a reason; it holds counts and
settings, never a job's id, name or arguments::

    {"status": "failing", "checks": {"executor": {"status": "failing", "reason": "starting"}, ...}}

Stalls and loop blocks are seen by the probes and by a heartbeat on the loop (one timer a
quarter of ``max_loop_block`` apart, at most a second), started by the first probe: nothing
runs on a job's path.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import Receive, Scope, Send

from ._errors import NotRunning
from ._executor import Backburner
from ._proxy import current_executor

__all__ = ["HealthApp", "health_app"]

#: A loop block longer than ``max_loop_block`` fails ``/live`` for this many seconds after.
BLOCK_REMEMBERED = 60.0

Check = dict[str, str]


def _check(ok: bool, reason: str) -> Check:
    return {"status": "ok" if ok else "failing", "reason": reason}


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return float(value)


class _Heartbeat:
    """Beats on the loop; remembers the last beat that came more than ``limit`` seconds late."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.every = min(limit / 4, 1.0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.expected = 0.0
        self.last_block: tuple[float, float] | None = None  # (loop time it ended, seconds)

    def ensure(self, loop: asyncio.AbstractEventLoop) -> None:
        """Beat on ``loop`` (from now on, if it was not already)."""
        if self.loop is not loop:
            self.loop = loop
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self.expected = loop.time() + self.every
        loop.call_later(self.every, self._beat, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self.loop:
            return  # a loop this app no longer serves (a test's, closed)
        now = loop.time()
        late = now - self.expected
        if late > self.limit:
            self.last_block = (now, late)
        self._schedule(loop)

    def check(self, loop: asyncio.AbstractEventLoop) -> Check:
        late = loop.time() - self.expected  # a beat still to run, late already: a block too
        if late > self.limit:
            self.last_block = (loop.time(), late)
        block = self.last_block
        if block is not None and loop.time() - block[0] < BLOCK_REMEMBERED:
            ago = loop.time() - block[0]
            return _check(
                False,
                f"the event loop was blocked for {block[1]:.1f}s {ago:.0f}s ago "
                f"(max_loop_block={self.limit:g}s)",
            )
        return _check(True, f"no block over {self.limit:g}s in the last {BLOCK_REMEMBERED:g}s")


class HealthApp:
    """The ASGI app ``health_app()`` returns: ``GET /live`` and ``GET /ready``."""

    def __init__(
        self,
        bg: Backburner | None,
        *,
        stall_after: float,
        max_loop_block: float,
        max_journal_lag: int,
        scheduler_late: float,
    ) -> None:
        if bg is not None and not isinstance(bg, Backburner):
            raise TypeError(f"health_app(bg) takes a Backburner or None, got {bg!r}")
        if isinstance(max_journal_lag, bool) or not isinstance(max_journal_lag, int):
            raise TypeError(f"max_journal_lag must be a number of jobs, got {max_journal_lag!r}")
        if max_journal_lag < 0:
            raise ValueError(f"max_journal_lag must be 0 or more, got {max_journal_lag}")
        self.bg = bg
        self.stall_after = _positive("stall_after", stall_after)
        self.max_journal_lag = max_journal_lag
        self.scheduler_late = _positive("scheduler_late", scheduler_late)
        self._heartbeat = _Heartbeat(_positive("max_loop_block", max_loop_block))
        # Executors seen running: not running now means stopping, not starting.
        self._seen_running: weakref.WeakSet[Backburner] = weakref.WeakSet()
        # Per queue: the count of jobs it had started, and since when (clock time) it has had
        # waiting jobs without starting one more.
        self._progress: dict[tuple[int, str], tuple[int, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # a lifespan or websocket scope: nothing for us
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: starlette keeps the prefix in `path`
            path = path[len(root) :]
        probe = {"/live": self.live, "/ready": self.ready}.get(path)
        if probe is None:
            response: Any = PlainTextResponse("Not Found", 404)
        elif scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("Method Not Allowed", 405, {"Allow": "GET, HEAD"})
        else:
            self._heartbeat.ensure(asyncio.get_running_loop())
            checks = probe()
            ok = all(check["status"] == "ok" for check in checks.values())
            body = {"status": "ok" if ok else "failing", "checks": checks}
            response = JSONResponse(body, 200 if ok else 503, {"Cache-Control": "no-store"})
        await response(scope, receive, send)

    def _executor(self) -> Backburner | None:
        if self.bg is not None:
            return self.bg
        try:
            return current_executor()
        except NotRunning:
            return None

    def live(self) -> dict[str, Check]:
        """The liveness checks: what failed for good in this process."""
        checks = {"loop": self._heartbeat.check(asyncio.get_running_loop())}
        bg = self._executor()
        if bg is not None:
            checks["scheduler"] = self._scheduler_check(bg)
            lost = [problem for q in bg.queues().values() if (problem := q.problem()) is not None]
            checks["workers"] = _check(not lost, "; ".join(lost) or "every queue's workers run")
            journal = bg.stats().journal
            if journal is not None and journal.problem is not None:
                checks["journal"] = _check(False, journal.problem)
        return checks

    def ready(self) -> dict[str, Check]:
        """The readiness checks (and the liveness ones): should this process take traffic."""
        checks = self.live()
        bg = self._executor()
        if bg is None:
            checks["executor"] = _check(
                False, "starting: no backburner executor runs yet (or several: pass bg)"
            )
            return checks
        checks["executor"] = self._running_check(bg)
        stats = bg.stats()
        journal = stats.journal
        if journal is not None and journal.problem is None:
            checks["journal"] = _check(
                journal.lag <= self.max_journal_lag,
                f"{journal.lag} jobs wait to be written (max_journal_lag={self.max_journal_lag})",
            )
        checks["queues"] = self._stall_check(bg)
        return checks

    def _running_check(self, bg: Backburner) -> Check:
        if bg.running:
            self._seen_running.add(bg)
            return _check(True, "running")
        if bg in self._seen_running:
            return _check(False, "shutting down: the executor drains its jobs")
        return _check(False, "starting")

    def _scheduler_check(self, bg: Backburner) -> Check:
        scheduler = bg.scheduler
        if scheduler is None or not bg.running:
            return _check(True, "not running")
        soonest, _ = scheduler.soonest(lambda timer: True, 1, 16)
        late = bg.clock.now() - soonest[0][0] if soonest else 0.0
        if late > self.scheduler_late:
            return _check(
                False,
                f"the scheduler's soonest call is {late:.0f}s overdue "
                f"(scheduler_late={self.scheduler_late:g}s)",
            )
        return _check(True, "on time")

    def _stall_check(self, bg: Backburner) -> Check:
        now = bg.clock.now()
        paused = bg.paused()
        stats = bg.stats().queues
        stalled = []
        for name, queue in bg.queues().items():
            key = (id(bg), name)
            started = queue.wait_totals()[0]
            known = self._progress.get(key)
            queue_stats = stats.get(name)
            # Jobs a limit holds wait on purpose (a concurrency or rate limit): not a stall.
            waiting = (
                queue_stats is not None and queue_stats.pending > queue_stats.held and bg.running
            )
            if not waiting or name in paused or known is None or known[0] != started:
                self._progress[key] = (started, now)
            elif now - known[1] >= self.stall_after:
                stalled.append(f"{name!r} ({now - known[1]:.0f}s)")
        if stalled:
            return _check(
                False,
                f"waiting jobs but none started for stall_after={self.stall_after:g}s: "
                + ", ".join(stalled),
            )
        return _check(True, "every queue with waiting jobs starts them")


def health_app(
    bg: Backburner | None = None,
    *,
    stall_after: float = 60.0,
    max_loop_block: float = 5.0,
    max_journal_lag: int = 1000,
    scheduler_late: float = 60.0,
) -> HealthApp:
    """An ASGI app answering ``GET /live`` and ``GET /ready`` for ``bg``.

    ``bg``: the executor to watch; None: the one of the request (under
    ``BackburnerMiddleware``), else the only one running in the process. Mount it where no
    authentication applies: probes carry no credentials, and the body holds no job data.

    ``stall_after``: seconds a queue may hold waiting jobs without starting one before
    ``/ready`` fails (above the longest job's run time: a queue busy with long jobs starts
    none either). ``max_loop_block``: seconds the event loop may be blocked before
    ``/live`` fails (for a minute after). ``max_journal_lag``: jobs accepted but not yet
    written before ``/ready`` fails. ``scheduler_late``: seconds the scheduler's soonest call
    may be overdue before ``/live`` fails.
    """
    return HealthApp(
        bg,
        stall_after=stall_after,
        max_loop_block=max_loop_block,
        max_journal_lag=max_journal_lag,
        scheduler_late=scheduler_late,
    )
