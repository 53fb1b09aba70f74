"""The journal's file: create it (mode 0600, atomically), check it, and migrate its schema.

Nothing is read from a journal that fails a check: a file that is empty, not SQLite, that
SQLite itself calls damaged (after recovering its WAL: cut short, overwritten), somebody else's
database or written by a newer backburner makes ``open_file`` raise ``JournalError`` with what
to do, and startup fails (uvicorn exits 3).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path

from .._errors import JournalError

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "open_file"]

#: ``PRAGMA application_id``: "bbjl", so a journal is told from any other SQLite file.
APPLICATION_ID = 0x62626A6C
SCHEMA_VERSION = 4
BUSY_TIMEOUT_MS = 5000  # then Journal.transaction retries, however long
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
_WHAT_TO_DO = (
    "If it is a journal, restore it from a backup; to start with an empty journal, move it "
    "aside (its unfinished jobs are then lost) or point journal= at another path."
)

# Each step takes the schema from version N to N + 1 (index N). Applied in one transaction.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,        -- the job's id, as its logs show it
        name TEXT NOT NULL,         -- the registered name of its function
        queue TEXT NOT NULL,
        payload TEXT NOT NULL,      -- JSON: {"args": [...], "kwargs": {...}, "options": {...}}
        state TEXT NOT NULL,        -- queued, running, succeeded, failed, dead, cancelled, invalid
        owner TEXT,                 -- the process holding it (host:pid:nonce); NULL: free
        lease_until REAL,           -- wall time until which its claim holds without question
        run_at REAL,                -- clock time it is due (delayed or retrying); NULL: now
        attempt INTEGER NOT NULL DEFAULT 0,
        crashes INTEGER NOT NULL DEFAULT 0,  -- attempts its process died during
        unique_key TEXT,
        enqueued_at REAL NOT NULL,
        finished_at REAL,
        error TEXT
    );
    CREATE INDEX jobs_unfinished ON jobs(owner) WHERE finished_at IS NULL;
    CREATE INDEX jobs_running ON jobs(owner) WHERE state = 'running';
    CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE owners (
        owner TEXT PRIMARY KEY,
        heartbeat REAL NOT NULL,    -- wall time of its last sign of life
        started_at REAL NOT NULL,
        released INTEGER NOT NULL DEFAULT 0,  -- 1: shut down or found dead; its jobs are free
        adopted_by TEXT  -- the live owner that took all its jobs at once (they stay in its name)
    );
    CREATE TABLE periodic (
        name TEXT PRIMARY KEY,
        last_run REAL NOT NULL      -- clock time of the last tick any process fired
    );
    """,
    # 2: what tells a live owner from a dead one without trusting the wall clock.
    """
    ALTER TABLE owners ADD COLUMN boot_id TEXT;  -- the kernel's boot id; NULL off Linux
    ALTER TABLE owners ADD COLUMN boot_beat REAL;  -- last heartbeat on CLOCK_BOOTTIME
    ALTER TABLE owners ADD COLUMN process_start INTEGER;  -- its process's start (/proc), if known
    """,
    # 3: the trace a job was enqueued in, so that its attempts after a restart link to it.
    """
    ALTER TABLE jobs ADD COLUMN trace TEXT;  -- W3C traceparent of its enqueue span; NULL: none
    """,
    # 4: the processes of a box act as one: unique keys held here, who fired each tick, each
    # process's stats, cancel requests for a job another process runs, and what lookup()
    # answers from any process (a job's start, progress and kept result).
    """
    UPDATE jobs SET unique_key = NULL WHERE unique_key IS NOT NULL AND finished_at IS NULL
        AND rowid NOT IN (SELECT min(rowid) FROM jobs WHERE unique_key IS NOT NULL
        AND finished_at IS NULL GROUP BY unique_key);  -- older duplicates run, keyless
    CREATE UNIQUE INDEX jobs_unique_key ON jobs(unique_key)
        WHERE unique_key IS NOT NULL AND finished_at IS NULL;
    ALTER TABLE periodic ADD COLUMN fired_by INTEGER;  -- the pid that fired last_run
    ALTER TABLE owners ADD COLUMN snapshot TEXT;  -- JSON: its queues' stats at its heartbeat
    ALTER TABLE jobs ADD COLUMN cancel_requested REAL;  -- wall time another process asked
    CREATE INDEX jobs_cancel_requested ON jobs(owner) WHERE cancel_requested IS NOT NULL;
    -- the dead list of every process, read without a scan of the week of finished jobs:
    CREATE INDEX jobs_failed ON jobs(finished_at)
        WHERE state IN ('failed', 'dead') AND finished_at IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN started_at REAL;  -- wall time its last attempt began
    ALTER TABLE jobs ADD COLUMN progress TEXT;  -- JSON [done, total, message, at, rate]
    ALTER TABLE jobs ADD COLUMN result TEXT;  -- JSON: a succeeded job's kept return value
    """,
)


def open_file(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open (creating if need be) and check the journal at ``path``; migrate it; return it.

    SQLite judges the file: it recovers the WAL, then ``quick_check`` reads every page through
    it. A file whose header looks short is fine if SQLite reads it (a checkpoint cut short by
    a full disk or a kill writes page 1 before it extends the file; the WAL still holds every
    page), so the header is read by hand only to say why SQLite refused a file.
    """
    if not path.exists():
        _create(path)
    _check_kind(path)
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from None
    try:
        try:
            _configure(connection, synchronous)
        except sqlite3.DatabaseError as exc:
            raise _damaged(path, str(exc)) from None
        _check_contents(connection, path)
        _migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _create(path: Path) -> None:
    """Make a journal with the current schema under a temporary name, then link it into place.

    So no process ever sees a half-made journal (a crash mid-way leaves only the temporary
    file), and two processes starting together agree on one file: the second link fails.
    """
    if not path.parent.is_dir():
        raise JournalError(
            f"cannot create the journal {path}: the folder {path.parent} does not exist"
        )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            _migrate(connection, temporary)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    except OSError as exc:
        raise JournalError(f"cannot create the journal {path}: {exc}") from None
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _check_kind(path: Path) -> None:
    """Refuse an empty file and one that is not SQLite at all, before SQLite is asked."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from None
    if not header:
        # SQLite would take an empty file for a new database; backburner never leaves one.
        raise JournalError(
            f"the journal {path} is empty (0 bytes): backburner never leaves a journal empty, so "
            f"this file was cut short or made by something else. {_WHAT_TO_DO}"
        )
    if header != _SQLITE_MAGIC:
        raise JournalError(f"the journal {path} is not an SQLite database. {_WHAT_TO_DO}")


def _damaged(path: Path, problem: str) -> JournalError:
    """The error for a file SQLite refused, saying how it looks cut short if it does."""
    return JournalError(
        f"the journal {path} is damaged: {problem}{_why_damaged(path)}. {_WHAT_TO_DO}"
    )


def _why_damaged(path: Path) -> str:
    # Only an explanation: SQLite has already refused the file.
    try:
        with path.open("rb") as file:
            header = file.read(_HEADER_SIZE)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return ""
    if len(header) < _HEADER_SIZE:
        return f" (it is truncated: {size} bytes, shorter than SQLite's {_HEADER_SIZE}-byte header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if size < pages * page_size:
        return (
            f" (it is truncated: {size} bytes where its header says {pages} pages of {page_size})"
        )
    return ""


def _configure(connection: sqlite3.Connection, synchronous: str) -> None:
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":  # pragma: no cover - a file system without shared memory
        raise JournalError(f"the journal needs SQLite's WAL mode; this file system gave {mode!r}")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA journal_size_limit=67108864")  # the WAL shrinks back to 64 MB
    connection.execute("PRAGMA cache_size=-32768")  # 32 MB: a restart reads every unfinished row


def _check_contents(connection: sqlite3.Connection, path: Path) -> None:
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, str(exc)) from None
    if problems != ["ok"]:
        raise _damaged(path, "; ".join(problems))
    if application_id != APPLICATION_ID:
        raise JournalError(
            f"{path} is an SQLite database but not a backburner journal (application_id "
            f"{application_id:#x}): point journal= at a file of its own."
        )
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path} was written by a newer backburner (schema version {version}; "
            f"this one reads up to {SCHEMA_VERSION}). Upgrade backburner, or point journal= "
            f"at another file."
        )


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    try:
        connection.execute("BEGIN IMMEDIATE")
        version = connection.execute("PRAGMA user_version").fetchone()[0]  # under the lock
        for step in _MIGRATIONS[version:]:
            code = re.sub(r"--[^\n]*", "", step)  # the comments are for readers of this file
            for statement in code.split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise JournalError(f"cannot update the journal {path}'s schema: {exc}") from None
