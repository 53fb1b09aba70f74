"""What one process does to another's jobs through the journal they share.

A dashboard answers from whichever process the load balancer picked; the job it is asked
about may be another's. These read and write the journal's file directly, on a connection of
their own, in the caller's thread (a dashboard calls them in a worker thread):

* ``find_row`` / ``dead_rows``: a job's row, and the failed and dead jobs of every process;
* ``rebuild``: a row as a ``Job`` handle (status, attempt, times, error), for pages to show;
* ``retry_row`` / ``discard_row``: a failed or dead job of any process made free to run again
  (the first process with room claims it at its next heartbeat), or forgotten;
* ``request_cancel``: a cancel request on a job another process holds, which its writer
  picks up within ``CANCEL_POLL`` seconds (``Journal.cancel_requests``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

from .._callables import plan_call
from .._errors import BackburnerError
from .._job import Job
from .._registry import lookup
from .._status import JobStatus
from ._file import BUSY_TIMEOUT_MS

__all__ = [
    "CANCEL_POLL",
    "JobRow",
    "connect",
    "dead_rows",
    "discard_row",
    "find_row",
    "rebuild",
    "request_cancel",
    "retry_row",
]

#: Seconds between two looks of a process for cancel requests on the jobs it holds.
CANCEL_POLL = 0.5
_COLUMNS = (
    "id, name, queue, payload, state, owner, run_at, attempt, unique_key, enqueued_at, "
    "finished_at, error"
)
_FAILED_STATES = ("failed", "dead")


class JobRow(NamedTuple):
    """A job's row, as the journal holds it."""

    id: str
    name: str
    queue: str
    payload: str
    state: str
    owner: str | None
    run_at: float | None
    attempt: int
    unique_key: str | None
    enqueued_at: float
    finished_at: float | None
    error: str | None

    @property
    def pid(self) -> int | None:
        """The pid of the process holding (or last holding) the job, from its owner id."""
        parts = (self.owner or "").rsplit(":", 2)
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def connect(path: str | Path, mode: str = "rw") -> sqlite3.Connection:
    """A connection of its own to the journal's file, ``mode`` ``rw`` or ``ro``: never one
    that creates it. A journal whose file went missing stays missing (its writer says so): an
    empty file made at its path by a look at the dashboard would refuse the next start."""
    uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)


def find_row(path: str | Path, job_id: str) -> JobRow | None:
    """The row of job ``job_id``, if the journal has it."""
    connection = connect(path)
    try:
        row = connection.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        connection.close()
    return None if row is None else JobRow._make(row)


def dead_rows(path: str | Path, limit: int) -> list[JobRow]:
    """The failed and dead jobs of every process (newest first), at most ``limit``."""
    connection = connect(path)
    try:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('failed', 'dead') "
            "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
    finally:
        connection.close()
    return [JobRow._make(row) for row in rows]


def retry_row(path: str | Path, job_id: str) -> bool:
    """Make a failed or dead job unfinished and free: a process with room runs it. False if it
    is not failed or dead (any more), or a live job holds its unique key."""
    return _write(
        path,
        "UPDATE OR IGNORE jobs SET state = 'queued', finished_at = NULL, owner = NULL, "
        "lease_until = NULL, run_at = NULL, error = NULL, crashes = 0, cancel_requested = NULL "
        "WHERE id = ? AND state IN ('failed', 'dead')",
        (job_id,),
    )


def discard_row(path: str | Path, job_id: str) -> bool:
    """Take a failed or dead job off every dead list (its row stays, as ``discarded``)."""
    return _write(
        path, "UPDATE jobs SET state = 'discarded' WHERE id = ? AND state IN ('failed', 'dead')",
        (job_id,),
    )  # fmt: skip


def request_cancel(path: str | Path, job_id: str, now: float) -> bool:
    """Ask the process holding an unfinished job to cancel it. False if it has ended."""
    return _write(
        path,
        "UPDATE jobs SET cancel_requested = ? WHERE id = ? AND finished_at IS NULL",
        (now, job_id),
    )


def _write(path: str | Path, sql: str, params: tuple[Any, ...]) -> bool:
    connection = connect(path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        changed = connection.execute(sql, params).rowcount
        connection.execute("COMMIT")
    finally:
        connection.close()
    return bool(changed)


def rebuild(row: JobRow) -> Job[Any] | None:
    """The row as a job handle to show (its function looked up by name); None if this process
    has no function registered under that name."""
    entry = lookup(row.name)
    if entry is None:
        return None
    try:
        payload = json.loads(row.payload)
        args, kwargs = list(payload.get("args", [])), payload.get("kwargs")
    except (ValueError, AttributeError):
        args, kwargs = [], None
    spec = plan_call(entry.fn).spec_in(row.queue)
    job: Job[Any] = Job(spec, tuple(args), kwargs, None, row.unique_key, job_id=row.id)
    job.enqueued_at, job.attempt = row.enqueued_at, row.attempt
    ended = _END.get(row.state)
    if ended is not None:
        error = None
        if ended in (JobStatus.FAILED, JobStatus.DEAD):
            error = BackburnerError(row.error or "failed")
        job.finish(ended, exc=error)
        job.finished_at = row.finished_at
    elif row.state == "running":
        job.try_start()
    elif row.run_at is not None:
        job.hold_until(row.run_at, JobStatus.RETRYING if row.attempt else JobStatus.SCHEDULED)
    return job


_END = {status.value: status for status in JobStatus if status.finished}
_END["invalid"] = _END["discarded"] = JobStatus.FAILED
