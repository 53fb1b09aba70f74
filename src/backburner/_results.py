"""Finished jobs kept for ``lookup``: results for ``result_ttl``, then tombstones as long again.

Every job that ends is handed to ``KeptResults.keep`` (the ``ResultStore`` port): on every
job's path, so it does O(1) work and nothing a lookup does not need. It appends the job and
the clock's time to a deque; the id index is built only when someone looks (each job is
indexed at most once), and entries move on when the deque is touched:

* a kept job is findable with its result (if kept: ``keep_result``, ``max_result_bytes``)
  until ``result_ttl`` after it ended, or until ``keep_results`` newer ones push it out;
* then it is a tombstone (``JobStatus.EXPIRED``: its id, name, queue, times and ``meta``, no
  result, no error) until ``2 * result_ttl`` after it ended, at most ``keep_results`` of them;
* then it is forgotten, and ``lookup`` answers None, as for an id that never was.

So the memory held is bounded by ``keep_results`` jobs and as many small tombstones, oldest
trimmed first, whatever the rate. Time is the executor's ``Clock`` (a ``ManualClock`` in tests).
"""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ._clock import Clock, SystemClock
from ._errortext import error_line
from ._info import NO_META, JobInfo
from ._job import Job
from ._status import JobStatus

__all__ = ["ERROR_CHARS", "KeptResults", "info_of", "result_size"]

logger = logging.getLogger("backburner")

_SUCCEEDED, _EXPIRED = JobStatus.SUCCEEDED, JobStatus.EXPIRED
#: The most characters of a failed job's error a snapshot holds.
ERROR_CHARS = 2000
# Results whose size needs no measuring: nothing a setting of 1 byte or more would refuse.
_SMALL = frozenset({type(None), bool, int, float})
_TEXT = frozenset({str, bytes, bytearray})


class _Tomb(NamedTuple):
    """What is left of an expired job: enough to say what it was, nothing it returned."""

    id: str
    name: str
    queue: str
    attempt: int
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    meta: Mapping[str, Any]
    forget_at: float


class KeptResults:
    """The in-memory ``ResultStore``: at most ``limit`` finished jobs and ``limit`` tombstones."""

    def __init__(self, limit: int, ttl: float, max_bytes: int, clock: Clock) -> None:
        self.limit = limit
        self.ttl = ttl
        self.max_bytes = max_bytes
        # The system clock's own function: one Python call less per job that ends.
        self._now: Callable[[], float] = time.time if isinstance(clock, SystemClock) else clock.now
        # (job, or its snapshot when its result is not kept; the clock time it ended)
        self._kept: deque[tuple[Job[Any] | JobInfo, float]] = deque()
        self._index: dict[str, tuple[Job[Any] | JobInfo, float]] = {}
        self._indexed = 0  # the oldest entries of _kept that are in _index
        self._tombs: OrderedDict[str, _Tomb] = OrderedDict()
        self._warned: set[str] = set()  # job names told once that a result was too large
        self._lock = threading.Lock()

    def keep(self, job: Job[Any]) -> None:
        """Remember ``job``, which has just ended. Any thread; O(1)."""
        limit = self.limit
        if not limit:
            return
        stamp = self._now()
        subject: Job[Any] | JobInfo = job
        if job.status is _SUCCEEDED and not self._result_kept(job):
            subject = info_of(job, expires_at=stamp + self.ttl, with_result=False)
        kept = self._kept
        lock = self._lock
        lock.acquire()  # (not `with`: half the cost, on every job's path)
        try:
            kept.append((subject, stamp))
            if len(kept) > limit or kept[0][1] + self.ttl <= stamp:
                self._trim(stamp)
        finally:
            lock.release()

    def _result_kept(self, job: Job[Any]) -> bool:
        if not job.options.keep_result:
            return False
        result = job.result()
        if type(result) in _SMALL:
            return True
        size = result_size(result)
        if size <= self.max_bytes:
            return True
        if job.name not in self._warned:
            self._warned.add(job.name)
            logger.warning(
                "job %s returned a result of about %d bytes, more than max_result_bytes=%d: "
                "lookup() keeps its status, not its result (said once per job name)",
                job.describe(),
                size,
                self.max_bytes,
                extra={"backburner_job_id": job.id},
            )
        return False

    def get(self, job_id: str) -> JobInfo | None:
        """The kept job or tombstone with this id, as a snapshot; None if neither is kept.

        A kept job that is no longer finished (retried by hand since) is not answered here.
        """
        with self._lock:
            now = self._now()
            self._trim(now)
            self._index_new()
            entry = self._index.get(job_id)
            tomb = None if entry is not None else self._tombs.get(job_id)
        if entry is not None:
            subject, stamp = entry
            if isinstance(subject, JobInfo):
                return subject
            if not subject.done():
                return None
            return info_of(subject, expires_at=stamp + self.ttl, with_result=True)
        if tomb is not None:
            return JobInfo(
                tomb.id, tomb.name, tomb.queue, _EXPIRED, tomb.attempt, None, tomb.enqueued_at,
                tomb.started_at, tomb.finished_at, None, False, None, tomb.meta, None,
                tomb.forget_at,
            )  # fmt: skip
        return None

    async def lookup(self, job_id: str) -> JobInfo | None:
        """``get``, as the ``ResultStore`` port asks."""
        return self.get(job_id)

    def __len__(self) -> int:
        """Kept jobs, tombstones not counted."""
        return len(self._kept)

    # Under the lock.

    def _index_new(self) -> None:
        index = self._index
        for entry in itertools.islice(self._kept, self._indexed, None):
            index[entry[0].id] = entry  # a job finished again (retried) replaces its old entry
        self._indexed = len(self._kept)

    def _trim(self, now: float) -> None:
        kept, ttl, limit = self._kept, self.ttl, self.limit
        while kept and (len(kept) > limit or kept[0][1] + ttl <= now):
            entry = kept.popleft()
            subject, stamp = entry
            job_id = subject.id
            if self._indexed:
                self._indexed -= 1
                if self._index.get(job_id) is entry:
                    del self._index[job_id]
            if isinstance(subject, Job) and not subject.done():
                continue  # retried by hand since: it is live, and will be kept again
            self._bury(subject, job_id, stamp + 2 * ttl)
        tombs = self._tombs
        while tombs:
            oldest = next(iter(tombs.values()))
            if len(tombs) <= limit and oldest.forget_at > now:
                break
            tombs.popitem(last=False)

    def _bury(self, subject: Job[Any] | JobInfo, job_id: str, forget_at: float) -> None:
        meta = subject.meta if isinstance(subject, JobInfo) else subject.options.meta or NO_META
        self._tombs[job_id] = _Tomb(
            job_id, subject.name, subject.queue, subject.attempt, subject.enqueued_at,
            subject.started_at, subject.finished_at, meta, forget_at,
        )  # fmt: skip
        self._tombs.move_to_end(job_id)


def info_of(
    job: Job[Any],
    *,
    expires_at: float | None = None,
    with_result: bool = False,
    position: int | None = None,
) -> JobInfo:
    """A snapshot of ``job`` now. ``with_result``: include a succeeded job's return value."""
    status = job.status
    has_result = with_result and status is _SUCCEEDED
    exc = job.exception()
    return JobInfo(
        id=job.id,
        name=job.name,
        queue=job.queue,
        status=status,
        attempt=job.attempt,
        progress=job.progress,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=job.result() if has_result else None,
        has_result=has_result,
        error=None if exc is None or status is _SUCCEEDED else error_line(exc, ERROR_CHARS),
        meta=job.options.meta or NO_META,
        position=position,
        expires_at=expires_at,
    )


def result_size(value: object) -> int:
    """About how many bytes ``value`` takes: its length for text and bytes, else its pickle's
    (its repr's if it cannot be pickled)."""
    if type(value) in _TEXT:
        return len(value)  # type: ignore[arg-type]
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        try:
            return len(repr(value))
        except Exception:
            return 0
