"""The loop-lag monitor: a watchdog thread that names whatever blocks the event loop.

An async job that calls ``time.sleep`` or crunches numbers without awaiting stops every request
of the process; nothing in asyncio says who did it. When ``loop_lag_warning`` is set, the loop
stamps a heartbeat every quarter of it (at most every second), and a daemon thread looks at the
stamp as often. When the
next beat is late by more than the threshold, the thread reads the loop's current task (the one
executing right now: ``asyncio.current_task(loop)`` works from any thread), finds the job whose
task it is, and logs one WARNING naming it, while the loop is still blocked. When the loop runs
again it logs how long the block lasted, at INFO.

Cost when on: one timer callback on the loop per beat and one thread waking as often; nothing per
job (the running jobs are only looked at once a block is seen). Off by default.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._job import Job

__all__ = ["LagMonitor", "check_lag_threshold"]

logger = logging.getLogger("backburner")

#: Below this the operating system's own scheduling and a garbage collection trip the monitor.
MIN_THRESHOLD = 0.02


def check_lag_threshold(value: object) -> float | None:
    """``loop_lag_warning``: None (off) or a finite number of seconds of at least 0.02."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"loop_lag_warning must be a number of seconds (or None: off), "
            f"got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value < MIN_THRESHOLD:
        raise ValueError(
            f"loop_lag_warning must be a finite number of seconds, at least {MIN_THRESHOLD} "
            f"(shorter blocks are the OS's own scheduling), got {value!r}"
        )
    return float(value)


class LagMonitor:
    """Warns, naming the job, when the loop has not run for longer than ``threshold`` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        running_jobs: Callable[[], Iterable[Job[Any]]],
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self._running_jobs = running_jobs
        # A quarter of the threshold: a block is seen at most a quarter late. At most a second,
        # so that a huge threshold cannot overflow a timer or a thread's wait.
        self._beat_every = min(threshold / 4, 1.0)
        self._last_beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        """Begin beating and watching. Call on the loop's thread."""
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._beat()
        self._thread = threading.Thread(
            target=self._watch, name="backburner-lag-monitor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and watching; the thread has ended when this returns (or within 1 s).

        The thread waits on the stop event, so it wakes at once: the join is short, and after
        ``aclose()`` no monitor thread of this executor is left (tests count them).
        """
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        if not self._stop.is_set():
            self._handle = self.loop.call_later(self._beat_every, self._beat)

    # The watchdog thread.

    def _watch(self) -> None:
        reported: float | None = None  # the beat after which a block was reported
        while not self._stop.wait(self._beat_every):
            if self.loop.is_closed() or not self.loop.is_running():
                return  # the loop ended without closing us: nothing left to watch
            last = self._last_beat
            late = time.monotonic() - last - self._beat_every
            if reported is not None and last != reported:
                logger.info(
                    "the event loop ran again after being blocked for at least %.2fs",
                    last - reported - self._beat_every,
                    extra={"backburner_lag": last - reported - self._beat_every},
                )
                reported = None
            if late > self.threshold and reported is None:
                reported = last
                self._report(late)

    def _report(self, late: float) -> None:
        task = asyncio.current_task(self.loop)
        job = self._job_of(task) if task is not None else None
        where = self._where()
        extra: dict[str, Any] = {"backburner_lag": late}
        if job is not None:
            extra.update(backburner_job_id=job.id, backburner_job_name=job.name)
            culprit = f"job {job.describe()}"
        elif task is not None:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", None) or repr(coro)
            culprit = f"task {task.get_name()!r} ({name}), not a job"
        else:
            culprit = "a callback, not a task"
        logger.warning(
            "the event loop has been blocked for at least %.2fs (loop_lag_warning=%gs) by %s%s: "
            "await instead of blocking, or make it a plain def so it runs in a thread",
            late,
            self.threshold,
            culprit,
            where,
            extra=extra,
        )

    def _job_of(self, task: asyncio.Task[Any]) -> Job[Any] | None:
        for _ in range(3):  # the set may change under us if the loop moves on meanwhile
            try:
                jobs = tuple(self._running_jobs())
            except RuntimeError:
                continue
            for job in jobs:
                if job.task is task:
                    return job
            return None
        return None

    def _where(self) -> str:
        """Where the loop's thread is now: the innermost frame outside the standard library."""
        frame = sys._current_frames().get(self._loop_thread)
        while frame is not None and _in_stdlib(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return ""
        return f", at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


_STDLIB = os.path.dirname(os.__file__)


def _in_stdlib(path: str) -> bool:
    return path.startswith(_STDLIB) and "-packages" not in path
