"""The journal's writer: one thread per process owns the SQLite connection and does all its I/O.

Writes arrive as operations (a job accepted, started, waiting to retry, finished) from any
thread. The writer takes everything queued since its last commit and writes it in one
``BEGIN IMMEDIATE`` transaction (group commit): many enqueues, one commit. A caller that must
know its job is on disk waits for its batch: ``wait()`` blocks a thread, ``await_batch()``
suspends a task; the event loop itself never touches the file.

Between batches, every ``heartbeat`` seconds, the writer does the process's housekeeping: it
renews its owner row (its heartbeat), frees the jobs of owners that died (a stale heartbeat and
an expired lease, or a pid gone on this host), marks dead any job that was running every time
its process died (``max_attempts``), claims free jobs up to the room its queues have, prunes
finished jobs older than ``keep_finished``, and checkpoints the WAL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from ._config import check_count, check_timeout
from ._errors import JournalError
from ._journal_file import open_file

__all__ = ["Batch", "ClaimedRow", "Journal", "JournalConfig", "JournalStats", "Recoverer"]

logger = logging.getLogger("backburner")

Durability = Literal["normal", "power"]
_SYNCHRONOUS = {"normal": "NORMAL", "power": "FULL"}

# How often the WAL is checkpointed and finished jobs are pruned, at most.
_HOUSEKEEPING_EVERY = 60.0
_PRUNE_CHUNK = 5000
_BUSY_WARNING_AFTER = 10.0
_BUSY_TIMEOUT_MS = 5000
_CLAIM_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where the journal is and how it behaves: ``Backburner(journal=JournalConfig(...))``.

    ``Backburner(journal="jobs.sqlite3")`` is ``JournalConfig("jobs.sqlite3")``: these defaults.
    """

    #: The SQLite file; created (mode 0600) if missing. Every process of an app shares it.
    path: str | os.PathLike[str]
    #: "normal": a committed job survives the process being killed (SQLite WAL,
    #: synchronous=NORMAL). "power": it also survives the machine losing power
    #: (synchronous=FULL: every commit waits for the disk).
    durability: Durability = "normal"
    #: Seconds a claim holds. A process whose heartbeat is older than this is presumed dead,
    #: and its jobs go to another process once their lease has expired too.
    lease: float = 30.0
    #: Seconds between heartbeats (and rounds of housekeeping); less than half of ``lease``.
    heartbeat: float = 5.0
    #: A job that was running every time its process died this many times is marked dead.
    max_attempts: int = 3
    #: Seconds finished jobs stay in the journal (their history) before they are pruned.
    keep_finished: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
            raise TypeError(f"journal must be a file path, got {self.path!r}")
        if self.durability not in _SYNCHRONOUS:
            raise ValueError(
                f"durability must be 'normal' (survives a crash of the process) or 'power' "
                f"(survives a power loss too), got {self.durability!r}"
            )
        lease = check_timeout("lease", self.lease)
        heartbeat = check_timeout("heartbeat", self.heartbeat)
        if heartbeat <= 0 or heartbeat * 2 > lease:
            raise ValueError(
                f"heartbeat ({self.heartbeat}s) must be more than 0 and at most half of lease "
                f"({self.lease}s): a live process must renew its claim well before it lapses"
            )
        check_count("max_attempts", self.max_attempts, "crashes a job may cause before it is dead")
        check_timeout("keep_finished", self.keep_finished)


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The journal as ``stats().journal`` shows it."""

    path: str
    durability: str
    #: SQLite's ``PRAGMA synchronous`` on the connection: 1 (NORMAL) or 2 (FULL).
    synchronous: int
    #: This process's owner id (host:pid:nonce).
    owner: str
    #: Jobs accepted but not yet committed: what a crash now would lose of enqueues that
    #: have not returned yet (a returned enqueue is always committed).
    lag: int
    #: Rows by state (queued, running, succeeded, ...), as of the last heartbeat.
    rows: dict[str, int]


class Batch:
    """The operations of one commit; who waits for them, and how it went."""

    __slots__ = ("_futures", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._futures: list[asyncio.Future[None]] = []


class ClaimedRow(NamedTuple):
    """An unfinished job this process has just claimed, to rebuild and run."""

    id: str
    name: str
    queue: str
    payload: str
    run_at: float | None
    attempt: int
    unique_key: str | None


class Recoverer(Protocol):
    """What the writer needs of the executor to hand it claimed jobs."""

    def room(self) -> tuple[dict[str, int], int]:
        """How many due jobs each queue can take now; how many delayed jobs the schedule can."""
        ...

    def clock_now(self) -> float:
        """The executor's clock (what ``run_at`` is measured on)."""
        ...

    def deliver(self, rows: Sequence[ClaimedRow]) -> tuple[list[tuple[str, str]], list[str]]:
        """Submit the jobs; return those that are invalid (id, why) and those with no room."""
        ...


_INSERT = 0
_DELETE = 1
_STARTED = 2
_RETRY = 3
_FINISH = 4
_TICK = 5
_REOPEN = 6
_INVALID = 7
_UNCLAIM = 8

_SQL = {
    _INSERT: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, run_at, "
    "attempt, unique_key, enqueued_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, 0, ?, ?)",
    _DELETE: "DELETE FROM jobs WHERE id = ?",
    _STARTED: "UPDATE jobs SET state = 'running', attempt = ?, finished_at = NULL, owner = ?, "
    "lease_until = ? WHERE id = ?",
    _RETRY: "UPDATE jobs SET state = 'queued', run_at = ?, attempt = ?, error = ? WHERE id = ?",
    _FINISH: "UPDATE jobs SET state = ?, finished_at = ?, error = ?, attempt = ? WHERE id = ?",
    _REOPEN: "UPDATE jobs SET state = 'queued', finished_at = NULL, owner = ?, lease_until = ? "
    "WHERE id = ?",
    _INVALID: "UPDATE jobs SET state = 'invalid', finished_at = ?, error = ? WHERE id = ?",
    _UNCLAIM: "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE id = ? AND "
    "(owner = ? OR owner IN (SELECT owner FROM owners WHERE adopted_by = ?))",
    # A tick is claimed once: by the first process to move last_run up to it.
    _TICK: "INSERT INTO periodic (name, last_run) VALUES (?, ?) ON CONFLICT (name) "
    "DO UPDATE SET last_run = excluded.last_run WHERE last_run < excluded.last_run",
}


def _field(index: int) -> str:
    return f"json_extract(v.value, '$[{index}]')"


# The same statements for a run of many operations: one statement, its rows passed as one JSON
# array. It matters under load: executemany releases and retakes the GIL for every row, and each
# retake can wait for the event loop's thread (up to sys.getswitchinterval(), 5 ms).
_BULK_SQL = {
    _INSERT: "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, run_at, "
    f"attempt, unique_key, enqueued_at) SELECT {_field(0)}, {_field(1)}, {_field(2)}, "
    f"{_field(3)}, 'queued', {_field(4)}, {_field(5)}, {_field(6)}, 0, {_field(7)}, "
    f"{_field(8)} FROM json_each(?) AS v",
    _DELETE: f"DELETE FROM jobs WHERE id IN (SELECT {_field(0)} FROM json_each(?) AS v)",
    _STARTED: f"UPDATE jobs SET state = 'running', attempt = {_field(0)}, finished_at = NULL, "
    f"owner = {_field(1)}, lease_until = {_field(2)} FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(3)}",
    _RETRY: f"UPDATE jobs SET state = 'queued', run_at = {_field(0)}, attempt = {_field(1)}, "
    f"error = {_field(2)} FROM json_each(?) AS v WHERE jobs.id = {_field(3)}",
    _FINISH: f"UPDATE jobs SET state = {_field(0)}, finished_at = {_field(1)}, "
    f"error = {_field(2)}, attempt = {_field(3)} FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(4)}",
    _REOPEN: f"UPDATE jobs SET state = 'queued', finished_at = NULL, owner = {_field(0)}, "
    f"lease_until = {_field(1)} FROM json_each(?) AS v WHERE jobs.id = {_field(2)}",
    _INVALID: f"UPDATE jobs SET state = 'invalid', finished_at = {_field(0)}, "
    f"error = {_field(1)} FROM json_each(?) AS v WHERE jobs.id = {_field(2)}",
    _UNCLAIM: f"UPDATE jobs SET owner = NULL, lease_until = NULL FROM json_each(?) AS v "
    f"WHERE jobs.id = {_field(0)} AND (jobs.owner = {_field(1)} OR jobs.owner IN "
    f"(SELECT owner FROM owners WHERE adopted_by = {_field(2)}))",
}


class Journal:
    """One process's handle on a journal file: its writer thread, its owner id, its claims."""

    def __init__(self, config: JournalConfig, recoverer: Recoverer) -> None:
        self.config = config
        self.path = Path(os.fspath(config.path)).absolute()
        self.recoverer = recoverer
        self.host = local_host()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._cond = threading.Condition(threading.Lock())
        self._ops: list[tuple[int, tuple[Any, ...]]] = []
        self._batch = Batch()
        self._uncommitted = 0  # inserts queued, not yet committed
        self._stopping = False
        self._release = True
        self._keeping = False  # shutdown's deadline passed: unfinished jobs stay unfinished
        self._rows: dict[str, int] = {}
        self._synchronous = 0
        self._bulk = False  # SQLite has json_each and UPDATE ... FROM (3.33 and later)
        #: Each periodic job's last tick, as the journal had it at open.
        self.periodic_last_run: dict[str, float] = {}
        self._connection: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._last_housekeeping = time.monotonic()

    def __repr__(self) -> str:
        return f"<Journal {self.path} owner={self.owner}>"

    # Lifecycle (the event loop's side).

    async def open(self) -> None:
        """Start the writer; it opens and checks the file, then claims what it can run."""
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name=f"backburner-journal-{self.path.name}"
        )
        self._thread.daemon = True  # a crash must not hang on it; close() joins it
        self._thread.start()
        await asyncio.wrap_future(opened)

    def keep_unfinished(self) -> None:
        """From now on, cancelled and abandoned ends are shutdown's: they stay unfinished."""
        self._keeping = True

    @property
    def keeping(self) -> bool:
        """True once shutdown passed its deadline: cancelled jobs stay in the journal."""
        return self._keeping

    async def close(self) -> None:
        """Write what is queued, release every unfinished job this process holds, and stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.wrap_future(self._closed)

    # Operations: any thread.

    def insert(self, row: tuple[Any, ...]) -> Batch:
        """Queue a new job's row: (id, name, queue, payload, run_at, unique_key, enqueued_at)."""
        job_id, name, queue, payload, run_at, unique_key, enqueued_at = row
        params = (
            job_id,
            name,
            queue,
            payload,
            self.owner,
            time.time() + self.config.lease,
            run_at,
            unique_key,
            enqueued_at,
        )
        with self._cond:
            self._ops.append((_INSERT, params))
            self._uncommitted += 1
            self._cond.notify()
            return self._batch

    def delete(self, job_id: str) -> None:
        """Take back a row whose job was not accepted after all (its queue was full)."""
        self._add(_DELETE, (job_id,))

    def started(self, job_id: str, attempt: int) -> None:
        """Record that an attempt began (so a crash during it counts against the job)."""
        self._add(_STARTED, (attempt, self.owner, time.time() + self.config.lease, job_id))

    def retrying(self, job_id: str, run_at: float, attempt: int, error: str | None) -> None:
        """Record that a failed job waits to retry at ``run_at``."""
        self._add(_RETRY, (run_at, attempt, error, job_id))

    def finished(self, job_id: str, state: str, error: str | None, attempt: int) -> None:
        """Record a job's end state."""
        self._add(_FINISH, (state, time.time(), error, attempt, job_id))

    def reopened(self, job_id: str) -> None:
        """Record that a failed job was sent again by hand (``retry()``): unfinished again."""
        self._add(_REOPEN, (self.owner, time.time() + self.config.lease, job_id))

    def claim_tick(self, name: str, tick: float) -> bool:
        """Blocking: True if this process is the first to fire periodic job ``name`` at ``tick``."""
        outcome: list[int] = []
        with self._cond:
            self._ops.append((_TICK, (name, tick, outcome)))
            batch = self._batch
            self._cond.notify()
        self.wait(batch)
        return bool(outcome and outcome[0])

    def _add(self, kind: int, params: tuple[Any, ...]) -> None:
        with self._cond:
            if self._stopping and self._closed.done():
                return  # a late end (an abandoned thread returned): its row stays released
            self._ops.append((kind, params))
            self._cond.notify()

    def wait(self, batch: Batch) -> None:
        """Block this thread until ``batch`` is committed; raise ``JournalError`` if it failed."""
        if threading.current_thread() is self._thread:
            return  # enqueued by the writer itself (a log handler, say): committed right after
        while not batch.done.wait(1.0):
            if self._thread is None or not self._thread.is_alive():
                raise JournalError(f"the journal {self.path} has stopped; the job was not written")
        if batch.error is not None:
            raise batch.error

    async def await_batch(self, batch: Batch) -> None:
        """Suspend this task until ``batch`` is committed (the event loop runs on meanwhile)."""
        with self._cond:
            if batch.done.is_set():
                future = None
            else:
                future = asyncio.get_running_loop().create_future()
                batch._futures.append(future)
        if future is not None:
            await future
        if batch.error is not None:
            raise batch.error

    def stats(self) -> JournalStats:
        """This journal's lag and rows (no I/O: the rows are counted at each heartbeat)."""
        return JournalStats(
            path=str(self.path),
            durability=self.config.durability,
            synchronous=self._synchronous,
            owner=self.owner,
            lag=self._uncommitted,
            rows=dict(self._rows),
        )

    # The writer thread.

    def _run(self, opened: concurrent.futures.Future[None]) -> None:
        try:
            synchronous = _SYNCHRONOUS[self.config.durability]
            self._connection = open_file(self.path, synchronous)
            self._synchronous = self._connection.execute("PRAGMA synchronous").fetchone()[0]
            self._bulk = _supports_bulk(self._connection)
            self._heartbeat(first=True)
            self.periodic_last_run = dict(
                self._connection.execute("SELECT name, last_run FROM periodic").fetchall()
            )
            self._free_orphans()
            self._claim()
            self._prune()
            self._count_rows()
        except BaseException as exc:
            if self._connection is not None:
                self._connection.close()
            error = exc if isinstance(exc, JournalError) else JournalError(f"{self.path}: {exc}")
            opened.set_exception(error)
            self._closed.set_result(None)
            return
        opened.set_result(None)
        try:
            self._serve()
        except BaseException:  # pragma: no cover - a bug: say so loudly, fail the waiters
            logger.exception("the journal's writer stopped")
            self._fail_waiting(JournalError(f"the journal {self.path}'s writer stopped"))
        finally:
            self._closed.set_result(None)

    def _serve(self) -> None:
        heartbeat = self.config.heartbeat
        next_round = time.monotonic() + heartbeat
        while True:
            with self._cond:
                while not self._ops and not self._stopping:
                    remaining = next_round - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                stopping = self._stopping
            if not self._commit_queued() and stopping:
                self._shutdown()
                return
            if time.monotonic() >= next_round:
                self._housekeeping()
                next_round = time.monotonic() + heartbeat

    def _commit_queued(self) -> bool:
        """Commit what is queued, if anything; True if there was something."""
        with self._cond:
            ops, batch = self._ops, self._batch
            if not ops:
                return False
            self._ops, self._batch = [], Batch()
        self._commit(ops, batch)
        return True

    def _commit(self, ops: list[tuple[int, tuple[Any, ...]]], batch: Batch) -> None:
        inserts = sum(1 for kind, _ in ops if kind == _INSERT)
        try:
            self._transaction(lambda connection: _write(connection, ops, self._bulk))
        except Exception as exc:
            logger.error("could not write %d jobs to the journal %s: %s", len(ops), self.path, exc)
            batch.error = JournalError(f"the journal {self.path} could not be written: {exc}")
        with self._cond:
            self._uncommitted -= inserts
            batch.done.set()
            futures, batch._futures = batch._futures, []
        _resolve_all(futures)

    def _fail_waiting(self, error: JournalError) -> None:
        with self._cond:
            batch = self._batch
            self._ops = []
        batch.error = error
        batch.done.set()
        _resolve_all(batch._futures)

    def _transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` in ``BEGIN IMMEDIATE``; wait out other processes' locks, however long."""
        connection = self._connection
        assert connection is not None
        began = time.monotonic()
        warned = False
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = body(connection)
                    connection.execute("COMMIT")
                    return result
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if not warned and time.monotonic() - began > _BUSY_WARNING_AFTER:
                    warned = True
                    logger.warning(
                        "the journal %s has been locked by another process for %.0fs; waiting",
                        self.path,
                        time.monotonic() - began,
                    )
                time.sleep(0.005)

    # Housekeeping: the writer thread, every heartbeat.

    def _housekeeping(self) -> None:
        try:
            self._heartbeat(first=False)
            self._free_orphans()
            self._claim()
            if time.monotonic() - self._last_housekeeping >= _HOUSEKEEPING_EVERY:
                self._last_housekeeping = time.monotonic()
                self._prune()
                self._checkpoint()
            self._count_rows()
        except Exception:
            logger.exception("the journal %s's housekeeping failed; trying again later", self.path)

    def _heartbeat(self, first: bool) -> None:
        now = time.time()

        def beat(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                "SELECT released FROM owners WHERE owner = ?", (self.owner,)
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO owners (owner, heartbeat, started_at) VALUES (?, ?, ?)",
                    (self.owner, now, now),
                )
            else:
                connection.execute(
                    "UPDATE owners SET heartbeat = ?, released = 0 WHERE owner = ?",
                    (now, self.owner),
                )
            return row is not None and bool(row[0])

        if self._transaction(beat) and not first:
            logger.warning(
                "this process (%s) was presumed dead by another: its heartbeat came too late "
                "(a stalled machine?). Jobs it held may run twice.",
                self.owner,
            )

    def _dead_owners(self, connection: sqlite3.Connection, now: float) -> list[str]:
        """Owners presumed dead: a pid gone on this host, or silent past the lease."""
        dead = []
        for owner, heartbeat in connection.execute(
            "SELECT owner, heartbeat FROM owners "
            "WHERE owner != ? AND released = 0 AND adopted_by IS NULL",
            (self.owner,),
        ):
            parts = str(owner).rsplit(":", 2)
            host, pid_text = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
            if host == self.host and pid_text.isdigit() and not _alive(int(pid_text)):
                dead.append(owner)  # certainly dead: its claims need not lapse
            elif heartbeat < now - self.config.lease:
                latest = connection.execute(
                    "SELECT max(lease_until) FROM jobs WHERE owner = ? AND finished_at IS NULL",
                    (owner,),
                ).fetchone()[0]
                if latest is None or latest < now:
                    dead.append(owner)  # silent, and every claim it made has lapsed
        return dead

    def _free_orphans(self) -> None:
        """Free the jobs of dead owners; mark dead the jobs that keep killing their process.

        An owner found dead is marked ``released``: its unfinished rows are free from then on,
        without rewriting them (a crashed process may leave 100,000). Only the rows that were
        running when it died are touched: each counts a crash, and past ``max_attempts`` the
        job is dead.
        """
        now = time.time()
        limit = self.config.max_attempts

        def free(connection: sqlite3.Connection) -> list[tuple[str, str, int]]:
            poisoned: list[tuple[str, str, int]] = []
            for owner in self._dead_owners(connection, now):
                crashed = connection.execute(
                    "SELECT rowid, id, name, crashes + 1 FROM jobs "
                    "WHERE owner = ? AND state = 'running' AND finished_at IS NULL",
                    (owner,),
                ).fetchall()
                connection.executemany(
                    "UPDATE jobs SET crashes = ?, state = ?, finished_at = ?, error = ? "
                    "WHERE rowid = ?",
                    [
                        (crashes, "dead", now, f"its process died during {crashes} attempts", rowid)
                        if crashes >= limit
                        else (crashes, "queued", None, None, rowid)
                        for rowid, _, _, crashes in crashed
                    ],
                )
                poisoned += [(i, n, c) for _, i, n, c in crashed if c >= limit]
                connection.execute(
                    "UPDATE owners SET released = 1, adopted_by = NULL "
                    "WHERE owner = ? OR adopted_by = ?",
                    (owner, owner),
                )
            # Released and adopted owners whose jobs have all been taken or finished go.
            connection.execute(
                "DELETE FROM owners WHERE (released = 1 OR adopted_by IS NOT NULL) "
                "AND NOT EXISTS (SELECT 1 FROM jobs "
                "WHERE jobs.owner = owners.owner AND jobs.finished_at IS NULL)"
            )
            return poisoned

        for job_id, name, crashes in self._transaction(free):
            logger.error(
                "job %s (%s) is dead: its process died during each of its last %d attempts; "
                "it stays in the journal %s and will not run again",
                job_id,
                name,
                crashes,
                self.path,
                extra={"backburner_job_id": job_id, "backburner_job_name": name},
            )

    def _claim(self) -> None:
        """Claim free jobs, up to the room the queues have, a chunk per transaction.

        The jobs are rebuilt and queued here, on this thread, not on the event loop's: SQLite
        releases the GIL for every row it steps through, and each time it is taken back it
        may wait for a busy loop thread for up to ``sys.getswitchinterval()``.
        """
        due_room, delayed_room = self.recoverer.room()
        left = dict(due_room)
        delayed_left = [delayed_room]
        assert self._connection is not None
        released = [
            row[0]
            for row in self._connection.execute("SELECT owner FROM owners WHERE released = 1")
        ]
        # Rows nobody holds, then those of each released owner: each an index range, in the
        # order the jobs were accepted.
        for source in [None, *released]:
            if source is not None:
                adopted = self._transaction(
                    functools.partial(
                        self._adopt,
                        source=source,
                        left=left,
                        delayed_left=delayed_left,
                        clock_now=self.recoverer.clock_now(),
                    )
                )
                if adopted is not None:
                    self._deliver(adopted)
                    self._commit_queued()
                    continue
            while True:
                limit = min(_CLAIM_CHUNK, sum(left.values()) + delayed_left[0])
                if limit <= 0:
                    return
                chosen, seen = self._transaction(
                    functools.partial(
                        self._claim_chunk,
                        source=source,
                        limit=limit,
                        left=left,
                        delayed_left=delayed_left,
                        clock_now=self.recoverer.clock_now(),
                        lease_until=time.time() + self.config.lease,
                    )
                )
                if chosen:
                    self._deliver(chosen)
                self._commit_queued()  # enqueues waiting for their commit go first
                if seen < limit or not chosen:
                    break  # this source is exhausted (or holds nothing this process can take)

    def _adopt(
        self,
        connection: sqlite3.Connection,
        *,
        source: str,
        left: dict[str, int],
        delayed_left: list[int],
        clock_now: float,
    ) -> list[ClaimedRow] | None:
        """Take every job of a released owner at once, if they all fit; else None.

        The jobs' rows are not rewritten: the owner row records who adopted it. A restart
        after a clean shutdown (or a crash) takes its predecessor's jobs this way, so 100,000
        jobs cost one read, not one write each.
        """
        if (
            connection.execute(
                "SELECT 1 FROM owners WHERE owner = ? AND released = 1", (source,)
            ).fetchone()
            is None
        ):
            return []  # adopted or forgotten meanwhile
        count = connection.execute(
            "SELECT count(*) FROM jobs WHERE owner = ? AND finished_at IS NULL", (source,)
        ).fetchone()[0]
        if count > sum(left.values()) + delayed_left[0]:
            return None
        rows = connection.execute(
            "SELECT id, name, queue, payload, run_at, attempt, unique_key FROM jobs "
            "WHERE owner = ? AND finished_at IS NULL ORDER BY rowid",
            (source,),
        ).fetchall()
        room, delayed = dict(left), delayed_left[0]
        for row in rows:
            run_at, queue = row[4], row[2]
            if run_at is not None and run_at > clock_now:
                delayed -= 1
            elif queue in room:
                room[queue] -= 1
        if delayed < 0 or any(value < 0 for value in room.values()):
            return None  # one queue lacks the room: claim row by row instead
        connection.execute(
            "UPDATE owners SET released = 0, adopted_by = ? WHERE owner = ?", (self.owner, source)
        )
        left.update(room)
        delayed_left[0] = delayed
        return [ClaimedRow._make(row) for row in rows]

    def _claim_chunk(
        self,
        connection: sqlite3.Connection,
        *,
        source: str | None,
        limit: int,
        left: dict[str, int],
        delayed_left: list[int],
        clock_now: float,
        lease_until: float,
    ) -> tuple[list[ClaimedRow], int]:
        params: tuple[str, ...] = ()
        if source is None:
            held = "owner IS NULL"
        else:
            held = "owner = ? AND owner IN (SELECT owner FROM owners WHERE released = 1)"
            params = (source,)
        rows = connection.execute(
            "SELECT rowid, id, name, queue, payload, run_at, attempt, unique_key FROM jobs "
            f"WHERE {held} AND finished_at IS NULL ORDER BY rowid LIMIT ?",
            (*params, limit),
        ).fetchall()
        chosen: list[ClaimedRow] = []
        rowids: list[tuple[int]] = []
        for row in rows:
            run_at, queue = row[5], row[3]
            if run_at is not None and run_at > clock_now:
                if delayed_left[0] <= 0:
                    continue
                delayed_left[0] -= 1
            elif queue in left:
                if left[queue] <= 0:
                    continue
                left[queue] -= 1
            # (A queue this executor lacks: claimed, and delivered as invalid.)
            chosen.append(ClaimedRow._make(row[1:]))
            rowids.append((row[0],))
        claim = "UPDATE jobs SET owner = ?, lease_until = ? WHERE "
        if rows and len(chosen) == len(rows):
            # Every row read is taken (the usual case): one statement for them all.
            connection.execute(
                claim + f"{held} AND finished_at IS NULL AND rowid <= ?",
                (self.owner, lease_until, *params, rows[-1][0]),
            )
        else:
            connection.executemany(
                claim + "rowid = ?", [(self.owner, lease_until, *r) for r in rowids]
            )
        return chosen, len(rows)

    def _deliver(self, rows: list[ClaimedRow]) -> None:
        invalid, unplaced = self.recoverer.deliver(rows)
        if invalid or unplaced:
            now = time.time()
            with self._cond:
                self._ops += [(_INVALID, (now, why, job_id)) for job_id, why in invalid]
                self._ops += [(_UNCLAIM, (job_id, self.owner, self.owner)) for job_id in unplaced]
                self._cond.notify()

    def _prune(self) -> int:
        """Delete finished jobs older than ``keep_finished``, a chunk per transaction."""
        cutoff = time.time() - self.config.keep_finished
        pruned = 0
        while True:
            count: int = self._transaction(
                lambda connection: (
                    connection.execute(
                        "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs "
                        "WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
                        (cutoff, _PRUNE_CHUNK),
                    ).rowcount
                )
            )
            pruned += count
            if count < _PRUNE_CHUNK:
                return pruned
            self._commit_queued()  # enqueues waiting for their commit go first

    def _checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it, if no other process is in the way.

        Without a busy timeout: TRUNCATE waits for every reader, and commits wait behind it.
        A checkpoint that cannot finish now is done at a later round.
        """
        connection = self._connection
        assert connection is not None
        connection.execute("PRAGMA busy_timeout=0")
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")

    def _count_rows(self) -> None:
        assert self._connection is not None
        self._rows = {
            str(state): count
            for state, count in self._connection.execute(
                "SELECT state, count(*) FROM jobs GROUP BY state"
            )
        }

    def _shutdown(self) -> None:
        """Release every unfinished job this process holds, in one transaction; close.

        The rows are not rewritten: the owner row is marked released, which frees them all
        (and the few that were running are marked queued), so that a shutdown with 100,000
        jobs waiting costs a few rows, well within the shutdown's deadline.
        """
        connection = self._connection
        assert connection is not None
        try:

            def release(connection: sqlite3.Connection) -> int:
                connection.execute(
                    "UPDATE jobs SET state = 'queued' "
                    "WHERE owner = ? AND state = 'running' AND finished_at IS NULL",
                    (self.owner,),
                )
                count: int = connection.execute(
                    "SELECT count(*) FROM jobs WHERE finished_at IS NULL AND (owner = ? OR "
                    "owner IN (SELECT owner FROM owners WHERE adopted_by = ?))",
                    (self.owner, self.owner),
                ).fetchone()[0]
                connection.execute(
                    "UPDATE owners SET released = 1, adopted_by = NULL, heartbeat = ? "
                    "WHERE owner = ? OR adopted_by = ?",
                    (time.time(), self.owner, self.owner),
                )
                if count == 0:
                    connection.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
                return count

            released = self._transaction(release)
            if released:
                logger.info(
                    "%d unfinished jobs kept in the journal %s for the next start",
                    released,
                    self.path,
                )
            self._checkpoint()
        except Exception:
            logger.exception("could not release this process's jobs in the journal %s", self.path)
        finally:
            connection.close()


def _write(
    connection: sqlite3.Connection, ops: list[tuple[int, tuple[Any, ...]]], bulk: bool
) -> None:
    """Execute ``ops`` in order, each run of one kind as one statement."""
    finished = {params[-1] for kind, params in ops if kind == _FINISH}
    run_kind = -1
    run: list[tuple[Any, ...]] = []

    def flush() -> None:
        if len(run) == 1 or not bulk:
            connection.executemany(_SQL[run_kind], run)
        else:
            connection.execute(_BULK_SQL[run_kind], (json.dumps(run),))
        run.clear()

    for kind, params in ops:
        if kind == _STARTED and params[-1] in finished:
            continue  # started and finished in one batch: the end is all that matters
        if kind != run_kind and run:
            flush()
        if kind == _TICK:
            name, tick, outcome = params
            outcome.append(connection.execute(_SQL[_TICK], (name, tick)).rowcount)
            run_kind = -1
            continue
        run_kind = kind
        run.append(params)
    if run:
        flush()


def _supports_bulk(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute(
            "UPDATE jobs SET state = state FROM json_each('[]') AS v WHERE jobs.id = v.value"
        )
    except sqlite3.OperationalError:  # an SQLite older than 3.33, or built without JSON
        return False
    return True


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    """Wake the tasks awaiting a batch: one call into each event loop, not one per task."""
    if not futures:
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for future in futures:
        by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, waiting in by_loop.items():
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_set_all, waiting)


def _set_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def local_host() -> str:
    """This host as owner ids name it: its name, and its pid namespace where there is one.

    Two containers may share a host name (host networking) but not their pids: a pid is only
    looked up where the namespace matches.
    """
    name = socket.gethostname().replace(":", "_")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return name
    return f"{name}/{namespace}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our pid, another nonce: an earlier process that had our pid is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
