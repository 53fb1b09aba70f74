"""The journal's writer: one thread per process owns the SQLite connection and does all its I/O.

Writes arrive as operations (a job accepted, started, waiting to retry, finished) from any
thread. The writer takes everything queued since its last commit and writes it in one
``BEGIN IMMEDIATE`` transaction (group commit): many enqueues, one commit. A caller that must
know its job is on disk waits for its batch: ``wait()`` blocks a thread, ``ainsert()``
suspends a task; the event loop itself never touches the file.

Between batches, every ``heartbeat`` seconds, the writer does the process's housekeeping
(``_journal_owners.py``: heartbeat, dead owners, claims, retention). The statements are in
``_journal_sql.py``, the file's checks and schema in ``_journal_file.py``.

Before each commit and each round of housekeeping the writer checks that the path still names
the file it opened (device and inode): a journal deleted, renamed or replaced under a running
process would take every later commit with it. Then the journal stops: enqueues raise
``JournalError`` saying what happened, it is logged at ERROR, and ``stats().journal.problem``
says so (for a readiness check).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import JournalError
from .._stats import JournalStats
from ._checkpoint import Checkpointer
from ._config import SYNCHRONOUS, JournalConfig
from ._file import BUSY_TIMEOUT_MS, open_file
from ._owners import (
    ClaimedRow,
    Owners,
    Recoverer,
    local_boot_id,
    local_host,
    open_here,
    process_start,
)
from ._shared import CANCEL_POLL
from ._sql import (
    DELETE,
    FINISH,
    INSERT,
    INSERT_UNIQUE,
    INVALID,
    PROGRESS,
    REOPEN,
    RETRY,
    STARTED,
    TICK,
    UNCLAIM,
    supports_bulk,
    write_ops,
)

__all__ = ["Batch", "ClaimedRow", "Journal", "JournalConfig", "JournalStats", "Recoverer"]

logger = logging.getLogger("backburner")


# The longest the writer waits for more operations before a commit, when the last commit
# woke several waiters (threads or tasks, each likely to send another job at once): a commit
# then carries the jobs of all of them, not one or two (group commit, as PostgreSQL's
# commit_delay with commit_siblings). A lone waiter never waits for company.
_GATHER = 0.0003
_GATHER_AT_MOST = 64
# How often the WAL is checkpointed, finished jobs are pruned and rows counted, at most.
_HOUSEKEEPING_EVERY = 60.0
_BUSY_WARNING_AFTER = 10.0


class Batch:
    """The operations of one commit; who waits for them, and how it went."""

    __slots__ = ("done", "error", "futures", "threads")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.futures: list[asyncio.Future[None]] = []
        self.threads = 0  # threads blocked until it is committed


class Journal:
    """One process's handle on a journal file: its writer thread, its owner id, its claims."""

    def __init__(
        self,
        config: JournalConfig,
        recoverer: Recoverer,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.path = Path(os.fspath(config.path)).absolute()
        self.recoverer = recoverer
        #: Wall time (heartbeats, leases, finish times); a test steps it to play a clock step.
        self.wall = wall_clock
        self.host = local_host()
        self.boot_id = local_boot_id()
        self.process_start = process_start(os.getpid())
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._cond = threading.Condition(threading.Lock())
        self._ops: list[tuple[int, tuple[Any, ...]]] = []
        self._batch = Batch()
        self._uncommitted = 0  # inserts queued, not yet committed
        self._company = 0  # waiters the last commit woke: how many operations to wait for
        self._gathering = False
        self._stopping = False
        # Why nothing more is written (None while writing): the writer has ended, or the
        # file is not the one it opened any more. Enqueues raise JournalError with it.
        self._refusal: str | None = None
        self._problem: str | None = None  # the part of it that stats() reports
        self._identity: tuple[int, int] | None = None  # the open file's (st_dev, st_ino)
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
        # Reads for other processes' jobs: a connection of their own, off the loop's thread.
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._owners = Owners(self)  # heartbeats, claims, retention: on this writer's thread
        self._checkpointer: Checkpointer | None = None  # the WAL's copies, off this thread

    def __repr__(self) -> str:
        return f"<Journal {self.path} owner={self.owner}>"

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The open connection, on the writer's thread (None before open and once closed)."""
        return self._connection

    def count(self, rows: dict[str, int]) -> None:
        """The rows by state, counted by the owners' side, for ``stats()``."""
        self._rows = rows

    # Lifecycle (the event loop's side).

    async def open(self) -> None:
        """Start the writer; it opens and checks the file, then claims what it can run."""
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name=f"backburner-journal-{self.path.name}"
        )
        self._thread.daemon = True  # a crash must not hang on it; close() joins it
        open_here.add(self.owner)  # so another journal of this process knows this owner lives
        self._thread.start()
        await asyncio.wrap_future(opened)

    def keep_unfinished(self) -> None:
        """From now on, cancelled and abandoned ends are shutdown's: they stay unfinished."""
        self._keeping = True

    @property
    def keeping(self) -> bool:
        """True once shutdown passed its deadline: cancelled jobs stay in the journal."""
        return self._keeping

    async def close(self, timeout: float | None = None) -> None:
        """Write what is queued, release every unfinished job this process holds, and stop.

        Waits at most ``timeout`` seconds: shutdown has a deadline, and another process may
        hold the file's lock. Past it the release is left to the writer (a daemon thread) and,
        should the process end first, to the other processes or the next start, which take
        the jobs of an owner whose pid is gone.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        open_here.discard(self.owner)  # from now on its jobs are for others to take
        if self._thread is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._closed)), timeout)
        except asyncio.TimeoutError:
            logger.error(
                "the journal %s could not release this process's jobs within %.1fs (locked by "
                "another process?); they stay claimed by %s and are taken over once it is gone",
                self.path,
                timeout,
                self.owner,
            )

    # Operations: any thread.

    def insert(self, row: tuple[Any, ...], holder: list[tuple[str]] | None = None) -> Batch:
        """Queue a new job's row: (id, name, queue, payload, run_at, unique_key, enqueued_at,
        trace).

        A row with a unique key is written only if no unfinished job holds the key: else the
        holder's id is appended to ``holder`` (which a row with a key must be given). Raises
        ``JournalError`` at once if the journal can write nothing more.
        """
        with self._cond:
            return self._insert(row, holder)

    async def ainsert(self, row: tuple[Any, ...], holder: list[tuple[str]] | None = None) -> None:
        """``insert``, then suspend this task until the row is committed (the event loop runs
        on meanwhile); ``JournalError`` if it was not written.

        One acquisition of the lock for both: every request that awaits ``aenqueue`` comes
        here, and the writer may be waiting on that lock.
        """
        future = asyncio.get_running_loop().create_future()
        with self._cond:
            batch = self._insert(row, holder)
            batch.futures.append(future)
        await future
        if batch.error is not None:
            raise batch.error

    def _insert(self, row: tuple[Any, ...], holder: list[tuple[str]] | None) -> Batch:
        """``insert`` under the lock."""
        if self._refusal is not None:
            raise JournalError(f"{self._refusal}; the job was not written")
        job_id, name, queue, payload, run_at, unique_key, enqueued_at, trace = row
        params = (
            job_id,
            name,
            queue,
            payload,
            self.owner,
            self.wall() + self.config.lease,
            run_at,
            unique_key,
            enqueued_at,
            trace,
        )
        if unique_key is None:
            self._ops.append((INSERT, params))
        else:
            assert holder is not None
            self._ops.append((INSERT_UNIQUE, (*params, holder)))
        self._uncommitted += 1
        self._notify()
        return self._batch

    def delete(self, job_id: str) -> Batch:
        """Take back a row whose job was not accepted after all (its queue was full)."""
        with self._cond:
            self._ops.append((DELETE, (job_id,)))
            self._notify()
            return self._batch

    def started(self, job_id: str, attempt: int) -> asyncio.Future[None] | None:
        """Record that an attempt begins; the event loop's thread only.

        Returns a future that is done once the start is committed: the job's code waits for
        it, so that a job that kills its process (SIGKILL, a segfault, ``os._exit``) has
        counted a crash, and after ``max_attempts`` of them is dead. Starts queued meanwhile
        share the commit. None if nothing more can be written: the job runs unrecorded.
        """
        now = self.wall()
        params = (attempt, self.owner, now + self.config.lease, now, job_id)
        future = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._refusal is not None:
                return None
            self._ops.append((STARTED, params))
            self._batch.futures.append(future)
            self._notify()
        return future

    def retrying(self, job_id: str, run_at: float, attempt: int, error: str | None) -> None:
        """Record that a failed job waits to retry at ``run_at``."""
        self._add(RETRY, (run_at, attempt, error, job_id))

    def finished(
        self,
        job_id: str,
        state: str,
        error: str | None,
        attempt: int,
        result: str | None = None,
        started_at: float | None = None,
    ) -> None:
        """Record a job's end state (and its kept result, as JSON)."""
        self._add(FINISH, (state, self.wall(), error, attempt, result, started_at, job_id))

    def progressed(self, reports: list[tuple[str, str]]) -> None:
        """Record running jobs' latest progress: (JSON, job id) each."""
        for report in reports:
            self._add(PROGRESS, report)

    def reopened(self, job_id: str) -> tuple[str, str | None] | None:
        """Blocking: record that a failed job was sent again by hand (``retry()``): unfinished
        again. None if it is (or has no row, or nothing more is written); else its row was
        left alone, and this says why: its state now (another process retried or discarded
        it), and the id of the job holding its unique key, if one does."""
        outcome: list[tuple[str, str | None]] = []
        with self._cond:
            if self._refusal is not None:
                return None
            self._ops.append(
                (REOPEN, (self.owner, self.wall() + self.config.lease, job_id, outcome))
            )
            batch = self._batch
            self._notify()
        self.wait(batch)
        return outcome[0] if outcome else None

    def claim_tick(self, name: str, tick: float) -> tuple[bool, int | None]:
        """Blocking: whether this process is the first to fire periodic job ``name`` at
        ``tick``, and the pid of the process that fired the latest tick."""
        outcome: list[int | None] = []
        with self._cond:
            if self._refusal is not None:
                return False, None  # (said at ERROR when it stopped)
            self._ops.append((TICK, (name, tick, os.getpid(), outcome)))
            batch = self._batch
            self._notify()
        self.wait(batch)
        won, fired_by = [*outcome, 0, None][:2]
        return bool(won), fired_by

    def _add(self, kind: int, params: tuple[Any, ...]) -> None:
        with self._cond:
            if self._refusal is not None:
                return  # a late end (an abandoned thread returned): its row stays released
            self._ops.append((kind, params))
            self._notify()

    def reject(self, invalid: list[tuple[str, str]], unplaced: list[str]) -> None:
        """Mark claimed rows invalid, and give back those the queues had no room for."""
        now = self.wall()
        with self._cond:
            if self._refusal is not None:
                return
            self._ops += [(INVALID, (now, why, job_id)) for job_id, why in invalid]
            self._ops += [(UNCLAIM, (job_id, self.owner, self.owner)) for job_id in unplaced]
            self._notify()

    def wait(self, batch: Batch) -> None:
        """Block this thread until ``batch`` is committed; raise ``JournalError`` if it failed."""
        if threading.current_thread() is self._thread:
            return  # enqueued by the writer itself (a log handler, say): committed right after
        with self._cond:
            batch.threads += 1
        while not batch.done.wait(1.0):
            if self._thread is None or not self._thread.is_alive():
                raise JournalError(f"the journal {self.path} has stopped; the job was not written")
        if batch.error is not None:
            raise batch.error

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Blocking: the rows of a read-only query (any thread but the event loop's)."""
        with self._read_lock:
            if self._reader is None:
                if self._refusal is not None:
                    raise JournalError(self._refusal)
                self._reader = sqlite3.connect(self.path, check_same_thread=False)
                self._reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                self._reader.execute("PRAGMA query_only=1")
            rows: list[tuple[Any, ...]] = self._reader.execute(sql, params).fetchall()
            return rows

    async def aread(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of a read-only query, read in a thread while the loop runs on."""
        return await asyncio.to_thread(self.read, sql, params)

    def _close_reader(self) -> None:
        with self._read_lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def stats(self) -> JournalStats:
        """This journal's lag and rows (no I/O: the rows are counted by the writer)."""
        return JournalStats(
            path=str(self.path),
            durability=self.config.durability,
            synchronous=self._synchronous,
            owner=self.owner,
            lag=self._uncommitted,
            rows=dict(self._rows),
            problem=self._problem,
        )

    # The writer thread.

    def _run(self, opened: concurrent.futures.Future[None]) -> None:
        try:
            synchronous = SYNCHRONOUS[self.config.durability]
            self._connection = open_file(self.path, synchronous)
            opened_file = os.stat(self.path)  # (SQLite has it open: the same file)
            self._identity = (opened_file.st_dev, opened_file.st_ino)
            self._synchronous = self._connection.execute("PRAGMA synchronous").fetchone()[0]
            self._bulk = supports_bulk(self._connection)
            self._owners.heartbeat(first=True)
            self.periodic_last_run = dict(
                self._connection.execute("SELECT name, last_run FROM periodic").fetchall()
            )
            self._owners.free_orphans()
            self._owners.claim()
            self._owners.prune()
            self._owners.count_rows()
            self._start_checkpointer(synchronous)
        except BaseException as exc:
            if self._connection is not None:
                self._connection.close()
            error = exc if isinstance(exc, JournalError) else JournalError(f"{self.path}: {exc}")
            self._fail_waiting(error)
            open_here.discard(self.owner)
            opened.set_exception(error)
            self._closed.set_result(None)
            return
        opened.set_result(None)
        try:
            self._serve()
        except BaseException:  # pragma: no cover - a bug: say so loudly, fail the waiters
            logger.exception("the journal's writer stopped")
            self._problem = f"the journal {self.path}'s writer stopped (a bug: see its traceback)"
            self._fail_waiting(JournalError(self._problem))
        else:
            # What came after the release (a late start or end) is not written: a waiter
            # must not wait for a commit that will never come.
            self._fail_waiting(JournalError(f"the journal {self.path} has stopped"))
        finally:
            open_here.discard(self.owner)
            self._stop_checkpointer()
            self._close_reader()
            self._closed.set_result(None)

    def _start_checkpointer(self, synchronous: str) -> None:
        """Checkpoint on another thread, not in commits; if it cannot start, SQLite does it."""
        assert self._connection is not None
        checkpointer = Checkpointer(self.path, synchronous)
        try:
            checkpointer.start()
        except sqlite3.Error as exc:  # pragma: no cover - the writer's own open just worked
            logger.warning("the journal %s: checkpoints stay in commits (%s)", self.path, exc)
            return
        self._checkpointer = checkpointer
        self._connection.execute("PRAGMA wal_autocheckpoint=0")

    def _stop_checkpointer(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()

    def _serve(self) -> None:
        heartbeat = self.config.heartbeat
        next_round = time.monotonic() + heartbeat
        next_look = time.monotonic() + CANCEL_POLL  # for cancel requests: more often
        while True:
            with self._cond:
                while not self._ops and not self._stopping:
                    remaining = min(next_round, next_look) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._gather()
                stopping = self._stopping
            if not self.commit_queued() and stopping:
                if self._connection is not None:  # (_file_is_ours closed it if its file went)
                    self._owners.release_all()
                return
            if time.monotonic() >= next_round:
                self._housekeeping()
                next_round = time.monotonic() + heartbeat
            if time.monotonic() >= next_look:
                self._look_for_cancel_requests()
                next_look = time.monotonic() + CANCEL_POLL

    def _gather(self) -> None:
        """Under the lock, with operations queued: wait briefly for the other waiters' jobs."""
        if self._company <= 1 or len(self._ops) >= self._company:
            return
        self._gathering = True  # operations wake the writer only once all are in
        try:
            self._cond.wait(_GATHER)
        finally:
            self._gathering = False

    def _notify(self) -> None:
        """Under the lock: an operation was queued; wake the writer (unless it gathers more)."""
        if not self._gathering or len(self._ops) >= self._company:
            self._cond.notify()

    def commit_queued(self) -> bool:
        """Commit what is queued, if anything; True if there was something."""
        with self._cond:
            ops, batch = self._ops, self._batch
            if not ops:
                return False
            self._ops, self._batch = [], Batch()
        self._commit(ops, batch)
        return True

    def _commit(self, ops: list[tuple[int, tuple[Any, ...]]], batch: Batch) -> None:
        inserts = sum(1 for kind, _ in ops if kind in (INSERT, INSERT_UNIQUE))
        if self._refusal is not None or not self._file_is_ours():
            # (A stat() a commit: a few microseconds against the commit's hundreds.)
            batch.error = JournalError(f"{self._refusal}; the job was not written")
        else:
            try:
                self.transaction(lambda connection: write_ops(connection, ops, self._bulk))
                if self._checkpointer is not None:
                    self._checkpointer.wanted()
            except Exception as exc:
                logger.error(
                    "could not write %d jobs to the journal %s: %s", len(ops), self.path, exc
                )
                batch.error = JournalError(f"the journal {self.path} could not be written: {exc}")
        with self._cond:
            self._uncommitted -= inserts
            batch.done.set()
            futures, batch.futures = batch.futures, []
            self._company = min(_GATHER_AT_MOST, batch.threads + len(futures))
        _resolve_all(futures)

    def _fail_waiting(self, error: JournalError) -> None:
        """Nothing more is written: fail the batch still open, and every later write at once."""
        with self._cond:
            if self._refusal is None:
                self._refusal = str(error)
            batch, self._ops = self._batch, []
            batch.error = error
            batch.done.set()
            futures, batch.futures = batch.futures, []
        _resolve_all(futures)

    def transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
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

    def _file_is_ours(self) -> bool:
        """False (and the journal stops, saying why) if the path names another file now."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            what = "was deleted or renamed: nothing is at that path any more"
        except OSError:
            return True  # cannot look now (a folder's permissions?): not a sign of anything
        else:
            if (now.st_dev, now.st_ino) == self._identity:
                return True
            what = "was replaced: the path names another file than the one opened at start"
        self._problem = (
            f"the journal {self.path} {what}. This process writes nothing more to it and "
            f"accepts no more jobs"
        )
        logger.error(
            "%s; the jobs it accepted run on, unrecorded. Put the file back and restart, or "
            "restart to begin with a new journal (the unfinished jobs of the missing file are "
            "then lost)",
            self._problem,
        )
        self._fail_waiting(JournalError(self._problem))
        self._stop_checkpointer()  # its connection finds the WAL by name too
        if self._connection is not None:
            # At once: a journal made anew at the path would share this one's -wal and -shm
            # files (they are found by name). SQLite does not checkpoint or delete the WAL of
            # a moved file when it closes it.
            self._connection.close()
            self._connection = None
        return False

    def _look_for_cancel_requests(self) -> None:
        """Every ``CANCEL_POLL``: cancel requests of other processes; running jobs' progress."""
        if self._refusal is not None or self._connection is None:
            return
        try:
            self._owners.cancel_requests()
            self.progressed(self.recoverer.progress_reports())
        except Exception:
            logger.exception("the journal %s: could not read cancel requests", self.path)

    def _housekeeping(self) -> None:
        if self._refusal is not None or not self._file_is_ours():
            return  # nothing more to say to a file that is not ours
        try:
            self._owners.heartbeat(first=False)
            self._owners.free_orphans()
            self._owners.claim()
            if time.monotonic() - self._last_housekeeping >= _HOUSEKEEPING_EVERY:
                self._last_housekeeping = time.monotonic()
                self._owners.prune()
                self._owners.checkpoint()
                self._owners.count_rows()
        except Exception:
            logger.exception("the journal %s's housekeeping failed; trying again later", self.path)


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
