"""The journal's statements: one per kind of operation, and a bulk form for a run of them.

The writer thread (``_journal.py``) queues operations as ``(kind, params)``; ``write_ops``
executes a batch of them in order, inside the writer's transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = [
    "BULK_SQL",
    "DELETE",
    "FINISH",
    "INSERT",
    "INSERT_UNIQUE",
    "INVALID",
    "PROGRESS",
    "REOPEN",
    "RETRY",
    "SQL",
    "STARTED",
    "TICK",
    "UNCLAIM",
    "supports_bulk",
    "write_ops",
]

INSERT = 0
DELETE = 1
STARTED = 2
RETRY = 3
FINISH = 4
TICK = 5
REOPEN = 6
INVALID = 7
UNCLAIM = 8
INSERT_UNIQUE = 9
PROGRESS = 10

SQL = {
    INSERT: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, run_at, "
    "attempt, unique_key, enqueued_at, trace) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, 0, ?, ?, ?)",
    DELETE: "DELETE FROM jobs WHERE id = ?",
    # A unique key is held by one unfinished job (the index jobs_unique_key): a new job whose
    # key is held is not written, and the holder is read instead.
    INSERT_UNIQUE: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, "
    "run_at, attempt, unique_key, enqueued_at, trace) "
    "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, 0, ?, ?, ?) ON CONFLICT DO NOTHING",
    # (OR IGNORE: a finished job made unfinished again while another holds its key stays
    # finished in the journal, rather than failing every write of its batch.)
    STARTED: "UPDATE OR IGNORE jobs SET state = 'running', attempt = ?, finished_at = NULL, "
    "owner = ?, lease_until = ?, started_at = ?, progress = NULL WHERE id = ?",
    RETRY: "UPDATE jobs SET state = 'queued', run_at = ?, attempt = ?, error = ? WHERE id = ?",
    FINISH: "UPDATE jobs SET state = ?, finished_at = ?, error = ?, attempt = ?, result = ?, "
    "started_at = coalesce(?, started_at) WHERE id = ?",
    # A running job's latest progress (JSON), at most about once a second per job.
    PROGRESS: "UPDATE jobs SET progress = ? WHERE id = ? AND finished_at IS NULL",
    # Only a job the journal still has failed or dead: another process may have retried (or
    # discarded) it meanwhile through the journal, and it must not run twice.
    # (A cancel request left from before its end is older than the retry: forgotten.)
    REOPEN: "UPDATE OR IGNORE jobs SET state = 'queued', finished_at = NULL, owner = ?, "
    "lease_until = ?, cancel_requested = NULL "
    "WHERE id = ? AND state IN ('failed', 'dead')",
    INVALID: "UPDATE jobs SET state = 'invalid', finished_at = ?, error = ? WHERE id = ?",
    UNCLAIM: "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE id = ? AND "
    "(owner = ? OR owner IN (SELECT owner FROM owners WHERE adopted_by = ?))",
    # A tick is claimed once: by the first process to move last_run up to it.
    TICK: "INSERT INTO periodic (name, last_run, fired_by) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET last_run = excluded.last_run, fired_by = excluded.fired_by "
    "WHERE last_run < excluded.last_run",
}


def _field(index: int) -> str:
    return f"json_extract(v.value, '$[{index}]')"


# The same statements for a run of many operations: one statement, its rows passed as one JSON
# array. It matters under load: executemany releases and retakes the GIL for every row, and each
# retake can wait for the event loop's thread (up to sys.getswitchinterval(), 5 ms).
BULK_SQL = {
    INSERT: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, run_at, "
    f"attempt, unique_key, enqueued_at, trace) SELECT {_field(0)}, {_field(1)}, {_field(2)}, "
    f"{_field(3)}, 'queued', {_field(4)}, {_field(5)}, {_field(6)}, 0, {_field(7)}, "
    f"{_field(8)}, {_field(9)} FROM json_each(?) AS v",
    DELETE: f"DELETE FROM jobs WHERE id IN (SELECT {_field(0)} FROM json_each(?) AS v)",
    STARTED: f"UPDATE OR IGNORE jobs SET state = 'running', attempt = {_field(0)}, "
    f"finished_at = NULL, owner = {_field(1)}, lease_until = {_field(2)}, "
    f"started_at = {_field(3)}, progress = NULL FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(4)}",
    RETRY: f"UPDATE jobs SET state = 'queued', run_at = {_field(0)}, attempt = {_field(1)}, "
    f"error = {_field(2)} FROM json_each(?) AS v WHERE jobs.id = {_field(3)}",
    FINISH: f"UPDATE jobs SET state = {_field(0)}, finished_at = {_field(1)}, "
    f"error = {_field(2)}, attempt = {_field(3)}, result = {_field(4)}, "
    f"started_at = coalesce({_field(5)}, started_at) FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(6)}",
    PROGRESS: f"UPDATE jobs SET progress = {_field(0)} FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(1)} AND finished_at IS NULL",
    INVALID: f"UPDATE jobs SET state = 'invalid', finished_at = {_field(0)}, "
    f"error = {_field(1)} FROM json_each(?) AS v WHERE jobs.id = {_field(2)}",
    UNCLAIM: f"UPDATE jobs SET owner = NULL, lease_until = NULL FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(0)} AND (jobs.owner = {_field(1)} OR jobs.owner IN "
    f"(SELECT owner FROM owners WHERE adopted_by = {_field(2)}))",
}


def write_ops(
    connection: sqlite3.Connection, ops: list[tuple[int, tuple[Any, ...]]], bulk: bool
) -> None:
    """Execute ``ops`` in order, each run of one kind as one statement."""
    finished = {params[-1] for kind, params in ops if kind == FINISH}
    run_kind = -1
    run: list[tuple[Any, ...]] = []

    def flush() -> None:
        if len(run) == 1 or not bulk:
            connection.executemany(SQL[run_kind], run)
        else:
            connection.execute(BULK_SQL[run_kind], (json.dumps(run),))
        run.clear()

    for kind, params in ops:
        if kind == STARTED and params[-1] in finished:
            continue  # started and finished in one batch: the end is all that matters
        if kind != run_kind and run:
            flush()
        if kind == INSERT_UNIQUE:
            *row, holder = params
            if connection.execute(SQL[INSERT_UNIQUE], row).rowcount == 0:
                holder += connection.execute(
                    "SELECT id FROM jobs WHERE unique_key = ? AND finished_at IS NULL", (row[7],)
                ).fetchall()
            run_kind = -1
            continue
        if kind == REOPEN:
            *row, outcome = params
            if connection.execute(SQL[REOPEN], row).rowcount == 0:
                # Why not: its state now, and the job holding its key if one does.
                outcome += connection.execute(
                    "SELECT state, (SELECT id FROM jobs AS holder WHERE holder.unique_key = "
                    "jobs.unique_key AND holder.finished_at IS NULL) FROM jobs WHERE id = ?",
                    (row[-1],),
                ).fetchall()
            run_kind = -1
            continue
        if kind == TICK:
            name, tick, pid, outcome = params
            outcome.append(connection.execute(SQL[TICK], (name, tick, pid)).rowcount)
            outcome += connection.execute(
                "SELECT fired_by FROM periodic WHERE name = ?", (name,)
            ).fetchone()
            run_kind = -1
            continue
        run_kind = kind
        run.append(params)
    if run:
        flush()


def supports_bulk(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute(
            "UPDATE jobs SET state = state FROM json_each('[]') AS v WHERE jobs.id = v.value"
        )
    except sqlite3.OperationalError:  # an SQLite older than 3.33, or built without JSON
        return False
    return True
