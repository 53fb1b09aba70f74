"""``lookup(job_id)`` from any process sharing the journal: the job's row, as a ``JobInfo``.

The executor's own lookup asks its kept results and its queues first; a job it does not know
may be another process's (the request that polls landed on another worker): then the journal
answers, read in a thread. The row holds what another process needs: the status, the attempt,
when it started and ended, its latest progress (written at most about once a second per job),
its error, its result if that was plain JSON, and its ``meta`` (for ``authorize``). A finished
job's result is kept ``result_ttl`` seconds, then the job is ``expired`` for as long again, as
in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .._info import NO_META, JobInfo
from .._job import describe_callable
from .._options import options_of
from .._progress import Progress
from .._registry import lookup as registered
from .._status import JobStatus
from ._writer import Journal

__all__ = ["JournalLookup"]

_QUERY = (
    "SELECT name, queue, state, run_at, attempt, enqueued_at, started_at, finished_at, error, "
    "progress, result, json_extract(payload, '$.options.meta') FROM jobs WHERE id = ?"
)
_ENDS = {status.value: status for status in JobStatus if status.finished}
_ENDS["invalid"] = _ENDS["discarded"] = JobStatus.FAILED


class JournalLookup:
    """Answers ``lookup`` for the jobs of every process sharing the journal."""

    def __init__(self, journal: Journal, result_ttl: float) -> None:
        self.journal = journal
        self.result_ttl = result_ttl

    async def lookup(self, job_id: str) -> JobInfo | None:
        """The job as its row says now, or None if the journal has no such job."""
        rows = await self.journal.aread(_QUERY, (job_id,))
        return None if not rows else self.info(job_id, rows[0])

    def info(self, job_id: str, row: tuple[Any, ...]) -> JobInfo | None:
        """The ``JobInfo`` of a row (None once it is forgotten: twice ``result_ttl`` after)."""
        (
            name,
            queue,
            state,
            run_at,
            attempt,
            enqueued,
            started,
            finished,
            error,
            progress,
            result,
            meta,
        ) = row
        now = time.time()
        expires_at = None
        if finished is not None:
            status = _ENDS.get(state, JobStatus.FAILED)
            expires_at = finished + self.result_ttl
            if now >= expires_at:
                if now >= expires_at + self.result_ttl:
                    return None
                status, result, error = JobStatus.EXPIRED, None, None
                expires_at += self.result_ttl  # the tombstone's own end
        elif state == "running":
            status = JobStatus.RUNNING
        elif run_at is not None and run_at > now:
            status = JobStatus.RETRYING if attempt else JobStatus.SCHEDULED
        else:
            status = JobStatus.PENDING
        entry = registered(name)
        has_result = status is JobStatus.SUCCEEDED and result is not None
        return JobInfo(
            id=job_id,
            name=describe_callable(entry.fn) if entry is not None else name,
            queue=queue,
            status=status,
            attempt=attempt,
            progress=_progress(progress) if status is not JobStatus.EXPIRED else None,
            enqueued_at=enqueued,
            started_at=started,
            finished_at=finished,
            result=json.loads(result) if has_result else None,
            has_result=has_result,
            error=None if status is JobStatus.SUCCEEDED else error,
            meta=_meta(meta, entry.fn if entry is not None else None),
            position=None,
            expires_at=expires_at,
        )


def _meta(text: str | None, fn: object) -> Mapping[str, Any]:
    # The row holds the meta given at enqueue (options(meta=...)) only where it differs from
    # the function's own (@job(meta=...)): authorize(request, info) decides on it, so a job
    # polled on another worker must carry the same meta as on its own.
    if text is not None:
        try:
            return MappingProxyType(json.loads(text))
        except (ValueError, TypeError):
            return NO_META
    meta = options_of(fn).meta if fn is not None else None
    return NO_META if meta is None else meta


def _progress(text: str | None) -> Progress | None:
    if not text:
        return None
    try:
        done, total, message, updated_at, rate = json.loads(text)
        return Progress(done, total, message, updated_at, rate)
    except (ValueError, TypeError):
        return None
