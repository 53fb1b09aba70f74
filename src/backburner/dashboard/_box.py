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

__all__ = ["box_view"]

_OWNERS = (
    "SELECT owner, started_at, heartbeat, snapshot FROM owners "
    "WHERE released = 0 AND adopted_by IS NULL ORDER BY started_at"
)


async def box_view(bg: Backburner) -> dict[str, Any] | None:
    """The processes of this app, or None when this one is all there is to show."""
    stats = bg.stats()
    if stats.journal is not None:
        lease = bg.journal_config.lease if bg.journal_config is not None else 30.0
        rows = await anyio.to_thread.run_sync(_owners, stats.journal.path)
        return _durable(rows, stats.journal.owner, lease)
    coordination = coordination_for(bg.coordination)
    if coordination is None:
        return None
    pids = await anyio.to_thread.run_sync(live_processes, coordination.directory)
    if len(pids) < 2:
        return None
    return {"durable": False, "pid": os.getpid(), "pids": pids, "count": len(pids)}


def _owners(path: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
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
