"""Finished jobs kept for ``lookup``: results for ``result_ttl``, then tombstones as long again.

Every job that ends is handed to ``KeptResults.keep`` (the ``ResultStore`` port), on every
job's path. So that path runs no Python code for it: with the system clock, ``keep`` is the
``append`` of a deque bounded at ``keep_results``, which drops the oldest itself; the job's
own ``finished_at`` is its time. Everything else waits until someone looks, or for the
executor's upkeep every few seconds (``tidy``: a result not to be kept must not wait for a
lookup that may never come): each first settles the jobs that ended since the last one
(results checked against ``keep_result`` and ``max_result_bytes``, ids indexed, each job
once), then ages the kept ones:

* a kept job is findable with its result (if kept) until ``result_ttl`` after it ended;
* then it is a tombstone (``JobStatus.EXPIRED``: its id, name, queue, times and ``meta``, no
  result, no error) until ``2 * result_ttl`` after it ended, at most ``keep_results`` of them;
* then it is forgotten, and ``lookup`` answers None, as for an id that never was.

Past ``keep_results`` jobs, the oldest is forgotten without a tombstone: making one is work
per job, which a steady load of more than ``keep_results`` jobs per ``result_ttl`` would pay
on every job's path (raise ``keep_results`` to remember more). So the memory held is bounded
whatever the rate: ``keep_results`` settled jobs, as many ended since the last look (a
result not to be kept is let go when its job settles), and ``keep_results`` small tombstones.
Time is the executor's ``Clock`` (a ``ManualClock`` in tests).
"""

from __future__ import annotations

import gc
import itertools
import logging
import pickle
import sys
import threading
import time
import types
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
# (Not int: an int may hold megabytes, `10**1_000_000`; its bit length tells, cheaply.)
_SMALL = frozenset({type(None), bool, float})
_BYTES = frozenset({bytes, bytearray})


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

    #: ``job`` has just ended: remember it. Any thread; on every job's path, so with the
    #: system clock it is a bounded deque's own ``append``: no Python code runs, and past
    #: ``limit`` unsettled jobs the deque drops the oldest itself.
    keep: Callable[[Job[Any]], None]

    def __init__(self, limit: int, ttl: float, max_bytes: int, clock: Clock) -> None:
        self.limit = limit
        self.ttl = ttl
        self.max_bytes = max_bytes
        # With the system clock a job's own `finished_at` is the clock's time it ended: no
        # clock read per job. Any other clock (a ManualClock) is read as each job is kept.
        self._wall = isinstance(clock, SystemClock)
        self._now: Callable[[], float] = time.time if self._wall else clock.now
        # Jobs that ended since the last lookup (with the system clock: jobs; else (job,
        # time) pairs), settled when someone looks: results checked, stamps taken, ids
        # indexed. Appends come from any thread, without a lock (a deque's append and
        # popleft are atomic).
        self._fresh: deque[Any] = deque(maxlen=limit)
        self.keep = self._fresh.append if self._wall else self._keep_stamped
        # (job, or its snapshot when its result is not kept; the time it ended), oldest
        # first. The oldest `len(_ids)` are in `_index`, under the ids in `_ids`.
        self._kept: deque[tuple[Job[Any] | JobInfo, float]] = deque()
        self._ids: deque[str] = deque()
        self._index: dict[str, tuple[Job[Any] | JobInfo, float]] = {}
        self._tombs: OrderedDict[str, _Tomb] = OrderedDict()
        self._warned: set[str] = set()  # job names told once that a result was too large
        self._lock = threading.Lock()

    def _keep_stamped(self, job: Job[Any]) -> None:
        self._fresh.append((job, self._now()))

    def _settle(self) -> None:
        # Under the lock: the fresh jobs join the kept ones; past the limit the oldest go.
        fresh, kept, limit, ttl, wall = self._fresh, self._kept, self.limit, self.ttl, self._wall
        while fresh:
            entry = fresh.popleft()
            job, stamp = (entry, entry.finished_at or 0.0) if wall else entry
            if job.status is _SUCCEEDED and not self._result_kept(job):
                kept.append((info_of(job, expires_at=stamp + ttl), stamp))
            else:
                kept.append((job, stamp))
            if len(kept) > limit:
                # The oldest is forgotten without a tombstone: see the module's docstring.
                self._pop_oldest()

    def _result_kept(self, job: Job[Any]) -> bool:
        if not job.options.keep_result:
            return False
        result = job.result()
        kind = type(result)
        if kind in _SMALL or (kind is int and result.bit_length() <= 8 * self.max_bytes):
            return True
        size = result_size(result, self.max_bytes)
        if size <= self.max_bytes:
            return True
        if job.name not in self._warned:
            self._warned.add(job.name)
            logger.warning(
                "job %s returned a result of more than max_result_bytes=%d (%d bytes or more): "
                "lookup() keeps its status, not its result (said once per job name)",
                job.describe(),
                self.max_bytes,
                size,
                extra={"backburner_job_id": job.id},
            )
        return False

    def tidy(self) -> None:
        """Settle the jobs that ended since the last look, and age the kept ones: the
        executor calls this every few seconds, so that results not to be kept (``keep_result``
        False, past ``max_result_bytes``) and results past their TTL are let go even when no
        one looks anything up."""
        with self._lock:
            self._settle()
            self._expire(self._now())
            self._index_new()

    def get(self, job_id: str) -> JobInfo | None:
        """The kept job or tombstone with this id, as a snapshot; None if neither is kept.

        A kept job that is no longer finished (retried by hand since) is not answered here.
        """
        found = self._find(job_id)
        if found is None or isinstance(found, JobInfo):
            return found
        job, stamp = found
        return info_of(job, expires_at=stamp + self.ttl, with_result=True)

    def find(self, job_id: str) -> Job[Any] | JobInfo | None:
        """The kept finished job with this id: the job itself, or a snapshot when that is all
        that is kept (its result not kept, or its tombstone); None if neither. For pages that
        show more of a job than ``lookup`` tells (the dashboard's)."""
        found = self._find(job_id)
        return found[0] if isinstance(found, tuple) else found

    def _find(self, job_id: str) -> tuple[Job[Any], float] | JobInfo | None:
        with self._lock:
            self._settle()
            self._expire(self._now())
            self._index_new()
            entry = self._index.get(job_id)
            tomb = None if entry is not None else self._tombs.get(job_id)
        if entry is not None:
            subject, stamp = entry
            if isinstance(subject, JobInfo):
                return subject
            return (subject, stamp) if subject.done() else None
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
        with self._lock:
            self._settle()
            return len(self._kept)

    # Under the lock.

    def _index_new(self) -> None:
        index, ids = self._index, self._ids
        for entry in itertools.islice(self._kept, len(ids), None):
            job_id = entry[0].id
            index[job_id] = entry  # a job finished again (retried) replaces its old entry
            ids.append(job_id)

    def _pop_oldest(self) -> tuple[tuple[Job[Any] | JobInfo, float], str | None]:
        entry = self._kept.popleft()
        if not self._ids:
            return entry, None
        job_id = self._ids.popleft()
        if self._index.get(job_id) is entry:
            del self._index[job_id]
        return entry, job_id

    def _expire(self, now: float) -> None:
        kept, ttl = self._kept, self.ttl
        while kept and kept[0][1] + ttl <= now:
            (subject, stamp), job_id = self._pop_oldest()
            if isinstance(subject, Job) and not subject.done():
                continue  # retried by hand since: it is live, and will be kept again
            self._bury(subject, job_id or subject.id, stamp + 2 * ttl)
        self._forget_tombs(now)

    def _forget_tombs(self, now: float) -> None:
        tombs = self._tombs
        while tombs:
            oldest = next(iter(tombs.values()))
            if len(tombs) <= self.limit and oldest.forget_at > now:
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


def result_size(value: object, limit: int) -> int:
    """About how many bytes ``value`` takes, counted up to a little past ``limit``: its length
    for bytes, its UTF-8 length for text, its bytes for an int, else its pickle's (pickling
    stops once past ``limit``, so a huge result costs no more than a small one), else the
    sizes of the objects it holds."""
    if type(value) in _BYTES:
        return len(value)  # type: ignore[arg-type]
    if type(value) is str:
        return _text_size(value, limit)
    if type(value) is int:
        return (value.bit_length() + 7) // 8
    sink = _Sink(limit)
    try:
        pickle.Pickler(sink, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except _TooLarge:
        return sink.size
    except Exception:  # it cannot be pickled: what it holds, counted another way
        return _held_size(value, limit)
    return sink.size


def _text_size(text: str, limit: int) -> int:
    # A character is 1 to 4 bytes in UTF-8: encoded (a copy) only when that decides, so a
    # short text or one already over the limit in characters costs nothing to count. (A lone
    # surrogate, which UTF-8 cannot encode, is counted as the 3 bytes it would take.)
    count = len(text)
    if count > limit or 4 * count <= limit or text.isascii():
        return count
    return len(text.encode("utf-8", "surrogatepass"))


# Objects a result refers to without holding them: shared by the whole program.
_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


def _held_size(value: object, limit: int) -> int:
    """``sys.getsizeof`` of ``value`` and of every object it refers to (classes, modules and
    functions aside), counted up to a little past ``limit``: pickling stops at the first
    object it refuses (a lock, a connection), which may come before megabytes of data."""
    seen: set[int] = set()
    stack = [value]
    size = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj, 0)
        if size > limit:
            break
        stack.extend(gc.get_referents(obj))
    return size


class _TooLarge(Exception):
    pass


class _Sink:
    """A file that counts what is written to it, and stops the writer past its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge
        return len(data)
