"""The journal's statements: one per kind of operation, and a bulk form for a run of them.

The writer thread (``_journal.py``) queues operations as ``(kind, params)``; ``write_ops``
executes a batch of them in order, inside the writer's transaction.
"""

from __future__ import annotations

import functools
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


def _v(column: int) -> str:
    return f"v.column{column}"


# The same statements for a run of many operations: one statement whose rows are a VALUES
# list (SQLite names its columns column1, column2, ...). It matters under load: executemany
# releases and retakes the GIL for every row, and each retake can wait for the event loop's
# thread (up to sys.getswitchinterval(), 5 ms); the parameters are bound as they are, with no
# JSON to write in Python and parse again in SQLite (which cost a batch 40% more CPU). A run
# is padded with rows of NULLs to a size in _SIZES (NULL matches no id; the INSERT skips
# them), so that a few statements serve every batch from the connection's statement cache.
BULK_SQL = {
    INSERT: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, run_at, "
    f"attempt, unique_key, enqueued_at, trace) SELECT {_v(1)}, {_v(2)}, {_v(3)}, {_v(4)}, "
    f"'queued', {_v(5)}, {_v(6)}, {_v(7)}, 0, {_v(8)}, {_v(9)}, {_v(10)} "
    f"FROM ({{rows}}) AS v WHERE {_v(1)} IS NOT NULL",
    DELETE: f"DELETE FROM jobs WHERE id IN (SELECT {_v(1)} FROM ({{rows}}) AS v)",
    STARTED: f"UPDATE OR IGNORE jobs SET state = 'running', attempt = {_v(1)}, "
    f"finished_at = NULL, owner = {_v(2)}, lease_until = {_v(3)}, started_at = {_v(4)}, "
    f"progress = NULL FROM ({{rows}}) AS v WHERE jobs.id = {_v(5)}",
    RETRY: f"UPDATE jobs SET state = 'queued', run_at = {_v(1)}, attempt = {_v(2)}, "
    f"error = {_v(3)} FROM ({{rows}}) AS v WHERE jobs.id = {_v(4)}",
    FINISH: f"UPDATE jobs SET state = {_v(1)}, finished_at = {_v(2)}, error = {_v(3)}, "
    f"attempt = {_v(4)}, result = {_v(5)}, started_at = coalesce({_v(6)}, started_at) "
    f"FROM ({{rows}}) AS v WHERE jobs.id = {_v(7)}",
    PROGRESS: f"UPDATE jobs SET progress = {_v(1)} FROM ({{rows}}) AS v "
    f"WHERE jobs.id = {_v(2)} AND finished_at IS NULL",
    INVALID: f"UPDATE jobs SET state = 'invalid', finished_at = {_v(1)}, error = {_v(2)} "
    f"FROM ({{rows}}) AS v WHERE jobs.id = {_v(3)}",
    UNCLAIM: f"UPDATE jobs SET owner = NULL, lease_until = NULL FROM ({{rows}}) AS v "
    f"WHERE jobs.id = {_v(1)} AND (jobs.owner = {_v(2)} OR jobs.owner IN "
    f"(SELECT owner FROM owners WHERE adopted_by = {_v(3)}))",
}
# A run's statement holds this many rows (the next size up; a longer run takes several):
# 6 sizes for each of 8 kinds, within the statement cache's 128 (a run of one: SQL).
_SIZES = (2, 4, 8, 16, 32, 64)
_MOST = _SIZES[-1]


def _execute_run(connection: sqlite3.Connection, kind: int, run: list[tuple[Any, ...]]) -> None:
    """Write ``run`` (two or more operations of ``kind``) in as few statements as it takes."""
    width = len(run[0])
    for at in range(0, len(run), _MOST):
        rows = run[at : at + _MOST]
        size = next(size for size in _SIZES if size >= len(rows))
        params = [value for row in rows for value in row]
        params += [None] * (width * (size - len(rows)))  # padding rows: they match nothing
        connection.execute(_bulk_statement(kind, size, width), params)


@functools.cache
def _bulk_statement(kind: int, size: int, width: int) -> str:
    """The statement for ``size`` operations of ``kind``, each of ``width`` parameters."""
    row = f"({', '.join('?' * width)})"
    return BULK_SQL[kind].format(rows=f"VALUES {', '.join([row] * size)}")


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
            _execute_run(connection, run_kind, run)
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
    """True if SQLite has ``UPDATE ... FROM`` (3.33 and later), which the bulk forms use."""
    try:
        connection.execute(_bulk_statement(UNCLAIM, 2, 3), [None] * 6)
    except sqlite3.OperationalError:  # an SQLite older than 3.33
        return False
    return True
