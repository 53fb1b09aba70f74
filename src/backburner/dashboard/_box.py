"""The box: every process of the app on this host, for the overview.

With a journal each process writes a snapshot of its queues with its heartbeat (the ``owners``
table); the overview lists the live ones (pid, started, heartbeat age, busy and pending per
queue) and their totals, read in a thread from the journal's file. Without one, the
coordination directory tells how many processes of the app run: the page then says plainly
that it shows one of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any

import anyio.to_thread

from .._coordination import coordination_for, live_processes
from .._executor import Backburner
from .._journal._shared import (
    JobRow,
    connect,
    dead_rows,
    discard_row,
    find_row,
    request_cancel,
    retry_row,
)
from ._api import ActionError

__all__ = ["act_elsewhere", "box_view", "dead_elsewhere", "journal_row"]

_OWNERS = (
    "SELECT owner, started_at, heartbeat, snapshot FROM owners "
    "WHERE released = 0 AND adopted_by IS NULL ORDER BY started_at"
)


async def box_view(bg: Backburner) -> dict[str, Any] | None:
    """The processes of this app, or None when this one is all there is to show."""
    stats = bg.stats()
    if stats.journal is not None:
        lease = bg.journal_config.lease if bg.journal_config is not None else 30.0
        try:
            rows = await anyio.to_thread.run_sync(_owners, stats.journal.path)
        except sqlite3.Error:  # gone or damaged (its writer says so): this process's page
            return None
        return _durable(rows, stats.journal.owner, lease)
    coordination = coordination_for(bg.coordination)
    if coordination is None:
        return None
    pids = await anyio.to_thread.run_sync(live_processes, coordination.directory)
    if len(pids) < 2:
        return None
    return {"durable": False, "pid": os.getpid(), "pids": pids, "count": len(pids)}


def _owners(path: str) -> list[tuple[Any, ...]]:
    connection = connect(path, "ro")
    try:
        return connection.execute(_OWNERS).fetchall()
    finally:
        connection.close()


def _durable(rows: list[tuple[Any, ...]], me: str, lease: float) -> dict[str, Any]:
    now = time.time()
    processes = []
    totals: dict[str, dict[str, int]] = {}
    for owner, started, heartbeat, snapshot in rows:
        try:
            state = json.loads(snapshot) if snapshot else {}
        except ValueError:
            state = {}
        queues = state.get("queues") if isinstance(state, dict) else None
        queues = queues if isinstance(queues, dict) else {}
        for name, counts in queues.items():
            total = totals.setdefault(str(name), {"busy": 0, "pending": 0, "workers": 0})
            for key in total:
                value = counts.get(key) if isinstance(counts, dict) else None
                total[key] += value if isinstance(value, int) else 0
        age = max(0.0, now - heartbeat)
        processes.append(
            {
                "owner": owner,
                "pid": _pid(owner),
                "this": owner == me,
                "started": started,
                "heartbeat_age": age,
                "silent": age > lease,
                "queues": {
                    str(name): {key: counts.get(key, 0) for key in ("busy", "pending", "workers")}
                    for name, counts in queues.items()
                    if isinstance(counts, dict)
                },
            }
        )
    return {"durable": True, "processes": processes, "count": len(processes), "totals": totals}


def _pid(owner: str) -> int | None:
    parts = owner.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


# Jobs of other processes, through the journal.


async def journal_row(bg: Backburner, job_id: str) -> JobRow | None:
    """The row of a job in this executor's journal (another process's, say); None without one."""
    journal = bg.stats().journal
    if journal is None:
        return None
    try:
        return await anyio.to_thread.run_sync(find_row, journal.path, job_id)
    except sqlite3.Error:  # the journal cannot be read (its writer says why): not found
        return None


async def dead_elsewhere(bg: Backburner, limit: int) -> list[JobRow]:
    """The failed and dead jobs of the other processes sharing the journal, newest first."""
    journal = bg.stats().journal
    if journal is None:
        return []
    try:
        rows = await anyio.to_thread.run_sync(dead_rows, journal.path, limit)
    except sqlite3.Error:  # the journal cannot be read (its writer says why): this process's
        return []
    return [row for row in rows if row.owner != journal.owner]


async def act_elsewhere(bg: Backburner, action: str, job_id: str) -> str | None:
    """Retry, discard or cancel another process's job through the journal; None if the job is
    this process's (or there is no journal): the action is then done here. ``ActionError``
    (503) if the journal cannot be read or written."""
    journal = bg.stats().journal
    if journal is None or action not in ("retry", "discard", "cancel"):
        return None
    try:
        return await _act_elsewhere(bg, action, job_id, journal.path)
    except sqlite3.Error as exc:
        raise ActionError(503, f"the journal {journal.path} cannot be read: {exc}") from None


async def _act_elsewhere(bg: Backburner, action: str, job_id: str, path: str) -> str | None:
    if action == "cancel":
        if bg.find_job(job_id) is not None:
            return None
        if await anyio.to_thread.run_sync(request_cancel, path, job_id, time.time()):
            return f"Job {job_id} runs in another process: asked it to cancel the job."
        raise ActionError(404, f"no job {job_id} is pending, scheduled or running")
    if any(job.id == job_id for job in bg.failures()):
        return None
    if action == "retry":
        if await anyio.to_thread.run_sync(retry_row, path, job_id):
            return f"Job {job_id} of another process sent to run again (by the first with room)."
        raise ActionError(404, f"job {job_id} is not in the dead list (or its key is held)")
    if await anyio.to_thread.run_sync(discard_row, path, job_id):
        return f"Job {job_id} of another process discarded."
    raise ActionError(404, f"job {job_id} is not in the dead list")
