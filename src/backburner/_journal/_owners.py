"""Owners, claims and housekeeping: how processes sharing a journal divide its jobs.

Each process is an owner (``host:pid:nonce``) with a heartbeat. Every ``heartbeat`` seconds its
writer thread renews it, finds owners that died and marks them ``released``, counting a crash
against each job they were running (past ``max_attempts`` it is dead); then claims free jobs up
to the room its queues have: rows held by nobody, and rows of released owners, adopting such an
owner whole when all its jobs fit (one row written, not one per job). A live owner's jobs are
never taken. Shutdown releases this process's owner row the same way. Finished jobs are pruned
after ``keep_finished``; the WAL is checkpointed.

Who is dead: on this host (same host name and pid namespace) an owner lives exactly as long as
its process, told apart from a later process that got its pid by the process's start time; a
late heartbeat there means a stalled loop or a clock step, never a death. An owner this host
cannot look up (another pid namespace, or no ``/proc``) is dead once silent for ``lease`` and
every claim it made has lapsed; silence is measured on ``CLOCK_BOOTTIME`` when it shares this
kernel (no clock step moves that clock), else on the wall clock. A process that finds it was
taken for dead says so at WARNING: the jobs it held may run twice.

``Owners`` does this for a ``Journal`` (its ``Writer``), only on the writer thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._file import BUSY_TIMEOUT_MS

if TYPE_CHECKING:
    from ._config import JournalConfig

__all__ = [
    "ClaimedRow",
    "Owners",
    "Recoverer",
    "Writer",
    "boot_clock",
    "local_boot_id",
    "local_host",
    "open_here",
    "process_start",
]

logger = logging.getLogger("backburner")

_PRUNE_CHUNK = 5000
_CLAIM_CHUNK = 10_000
_COUNT_CHUNK = 100_000

#: Owners of the journals open in this process: the only owners with our pid that live.
open_here: set[str] = set()


class ClaimedRow(NamedTuple):
    """An unfinished job this process has just claimed, to rebuild and run."""

    id: str
    name: str
    queue: str
    payload: str
    run_at: float | None
    attempt: int
    unique_key: str | None
    trace: str | None  # the W3C traceparent of its enqueue span, if it was traced


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

    def snapshot(self) -> str:
        """This process's queues now, as JSON, written with each heartbeat (for a dashboard)."""
        ...

    def cancel(self, job_ids: set[str]) -> None:
        """Cancel the jobs with these ids that this process holds (another process asked)."""
        ...

    def progress_reports(self) -> list[tuple[str, str]]:
        """Running jobs' progress that changed, as (JSON, job id), each at most once a second."""
        ...


class Writer(Protocol):
    """What the owner's side needs of the journal's writer (it runs on the writer's thread)."""

    #: This process's owner id (host:pid:nonce), and where it runs.
    owner: str
    host: str
    boot_id: str | None
    process_start: int | None
    #: Wall time (heartbeats, leases); a test steps it to play a clock step.
    wall: Callable[[], float]
    config: JournalConfig
    path: Path
    recoverer: Recoverer

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The open connection (None once closed)."""
        ...

    def transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` in ``BEGIN IMMEDIATE``, waiting out other processes' locks."""
        ...

    def commit_queued(self) -> bool:
        """Commit the operations queued meanwhile; False if there were none."""
        ...

    def reject(self, invalid: list[tuple[str, str]], unplaced: list[str]) -> None:
        """Queue the rows recovery could not take: invalid ones marked, unplaced ones freed."""
        ...

    def count(self, rows: dict[str, int]) -> None:
        """The rows by state, for ``stats()``."""
        ...


class Owners:
    """The owner's side of a journal: heartbeat, reaper, claims, retention, release.

    Composed into the ``Journal`` (its ``Writer``), whose thread calls every method here.
    """

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def heartbeat(self, first: bool) -> None:
        """Say this owner lives; if another process took it for dead meanwhile, say so."""
        me = self.writer
        now, boot_now = me.wall(), boot_clock()
        snapshot = me.recoverer.snapshot()  # (read here, on this thread: never the loop's)

        def beat(connection: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = connection.execute(
                "SELECT released, adopted_by FROM owners WHERE owner = ?", (self.writer.owner,)
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO owners (owner, heartbeat, started_at, boot_id, boot_beat, "
                    "process_start, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.writer.owner,
                        now,
                        now,
                        self.writer.boot_id,
                        boot_now,
                        self.writer.process_start,
                        snapshot,
                    ),
                )
            else:
                # Alive after all: what is still in its name is its own again.
                connection.execute(
                    "UPDATE owners SET heartbeat = ?, boot_beat = ?, released = 0, "
                    "adopted_by = NULL, snapshot = ? WHERE owner = ?",
                    (now, boot_now, snapshot, self.writer.owner),
                )
            return row

        row = self.writer.transaction(beat)
        if first:
            return
        if row is None:
            taken = "its owner row was gone: every job it held was taken or had finished"
        elif row[0]:
            taken = "it was marked released: the jobs it held were free for others to take"
        elif row[1] is not None:
            taken = f"{row[1]} adopted every job it held"
        else:
            return
        logger.warning(
            "this process (%s) was taken for dead by another process sharing the journal %s: "
            "%s. Its heartbeat came later than lease=%.1fs (a stalled machine or process?). "
            "Jobs it held may run twice.",
            self.writer.owner,
            self.writer.path,
            taken,
            self.writer.config.lease,
        )

    def _dead_owners(self, connection: sqlite3.Connection, now: float) -> list[str]:
        """Owners presumed dead (see the module's docstring)."""
        dead = []
        lease = self.writer.config.lease
        boot_now = boot_clock()
        for owner, heartbeat, boot_id, boot_beat, started in connection.execute(
            "SELECT owner, heartbeat, boot_id, boot_beat, process_start FROM owners "
            "WHERE owner != ? AND released = 0 AND adopted_by IS NULL",
            (self.writer.owner,),
        ).fetchall():
            alive = self._process_alive(str(owner), boot_id, started)
            if alive is not None:
                if not alive:
                    dead.append(owner)  # certainly dead: its claims need not lapse
                continue
            if boot_now is not None and boot_beat is not None and boot_id == self.writer.boot_id:
                silent = boot_beat < boot_now - lease  # one kernel: a clock no step moves
            else:
                silent = heartbeat < now - lease
            if silent:
                latest = connection.execute(
                    "SELECT max(lease_until) FROM jobs WHERE owner = ? AND finished_at IS NULL",
                    (owner,),
                ).fetchone()[0]
                if latest is None or latest < now:
                    dead.append(owner)  # silent, and every claim it made has lapsed
        return dead

    def _process_alive(self, owner: str, boot_id: str | None, started: int | None) -> bool | None:
        """Whether ``owner``'s process lives, if this host can tell; None if it cannot."""
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != self.writer.host or not parts[1].isdigit():
            return None  # another host or pid namespace: its heartbeat tells
        if (
            boot_id is not None
            and self.writer.boot_id is not None
            and boot_id != self.writer.boot_id
        ):
            return False  # this host has restarted since
        pid = int(parts[1])
        if pid == os.getpid():
            # Another executor of this process, or an earlier process with our pid (a
            # container's pid 1): only those open here live.
            return owner in open_here
        state = _process_state(pid)
        if state is None:  # gone, or no /proc here
            if not _pid_exists(pid):
                return False
            return None  # a live pid this host cannot tell from a reused one: ask the heartbeat
        status, start = state
        if status in ("Z", "X"):
            return False  # exited, not yet reaped by its parent
        if started is None:
            return None  # no start time to tell a reused pid by: its heartbeat tells
        return start == started  # else its pid went to another process

    def free_orphans(self) -> None:
        """Free the jobs of dead owners; mark dead the jobs that keep killing their process.

        An owner found dead is marked ``released``: its unfinished rows are free from then on,
        without rewriting them (a crashed process may leave 100,000). Only the rows that were
        running when it died are touched: each counts a crash, and past ``max_attempts`` the
        job is dead.
        """
        now = self.writer.wall()
        limit = self.writer.config.max_attempts

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
            # A job asked to cancel that no live process holds (its own died, or it was left
            # free) ends here as cancelled: whoever took it next would run it first, and only
            # cancel it at its next look for requests.
            connection.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, cancel_requested = NULL "
                "WHERE cancel_requested IS NOT NULL AND finished_at IS NULL AND (owner IS NULL "
                "OR owner IN (SELECT owner FROM owners WHERE released = 1))",
                (now,),
            )
            # Released and adopted owners whose jobs have all been taken or finished go.
            connection.execute(
                "DELETE FROM owners WHERE (released = 1 OR adopted_by IS NOT NULL) "
                "AND NOT EXISTS (SELECT 1 FROM jobs "
                "WHERE jobs.owner = owners.owner AND jobs.finished_at IS NULL)"
            )
            return poisoned

        for job_id, name, crashes in self.writer.transaction(free):
            logger.error(
                "job %s (%s) is dead: its process died during each of its last %d attempts; "
                "it stays in the journal %s and will not run again",
                job_id,
                name,
                crashes,
                self.writer.path,
                extra={"backburner_job_id": job_id, "backburner_job_name": name},
            )

    def claim(self) -> None:
        """Claim free jobs, up to the room the queues have, a chunk per transaction.

        The jobs are rebuilt and queued here, on this thread, not on the event loop's: SQLite
        releases the GIL for every row it steps through, and each time it is taken back it
        may wait for a busy loop thread for up to ``sys.getswitchinterval()``.
        """
        due_room, delayed_room = self.writer.recoverer.room()
        left = dict(due_room)
        delayed_left = [delayed_room]
        assert self.writer.connection is not None
        released = [
            row[0]
            for row in self.writer.connection.execute("SELECT owner FROM owners WHERE released = 1")
        ]
        # Rows nobody holds, then those of each released owner: each an index range, in the
        # order the jobs were accepted.
        for source in [None, *released]:
            if source is not None:
                adopted = self.writer.transaction(
                    functools.partial(
                        self._adopt,
                        source=source,
                        left=left,
                        delayed_left=delayed_left,
                        clock_now=self.writer.recoverer.clock_now(),
                    )
                )
                if adopted is not None:
                    self._deliver(adopted)
                    self.writer.commit_queued()
                    continue
            while True:
                limit = min(_CLAIM_CHUNK, sum(left.values()) + delayed_left[0])
                if limit <= 0:
                    return
                chosen, seen = self.writer.transaction(
                    functools.partial(
                        self._claim_chunk,
                        source=source,
                        limit=limit,
                        left=left,
                        delayed_left=delayed_left,
                        clock_now=self.writer.recoverer.clock_now(),
                        lease_until=self.writer.wall() + self.writer.config.lease,
                    )
                )
                if chosen:
                    self._deliver(chosen)
                self.writer.commit_queued()  # enqueues waiting for their commit go first
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
        room_left = sum(left.values()) + delayed_left[0]
        rows = connection.execute(
            "SELECT id, name, queue, payload, run_at, attempt, unique_key, trace FROM jobs "
            "WHERE owner = ? AND finished_at IS NULL ORDER BY rowid LIMIT ?",
            (source, room_left + 1),
        ).fetchall()
        if len(rows) > room_left:
            return None
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
            "UPDATE owners SET released = 0, adopted_by = ? WHERE owner = ?",
            (self.writer.owner, source),
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
            "SELECT rowid, id, name, queue, payload, run_at, attempt, unique_key, trace FROM jobs "
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
                (self.writer.owner, lease_until, *params, rows[-1][0]),
            )
        else:
            connection.executemany(
                claim + "rowid = ?", [(self.writer.owner, lease_until, *r) for r in rowids]
            )
        return chosen, len(rows)

    def _deliver(self, rows: list[ClaimedRow]) -> None:
        invalid, unplaced = self.writer.recoverer.deliver(rows)
        if invalid or unplaced:
            self.writer.reject(invalid, unplaced)

    def cancel_requests(self) -> None:
        """Cancel the jobs this process holds that another process asked to cancel."""

        def take(connection: sqlite3.Connection) -> set[str]:
            rows = connection.execute(
                "SELECT id FROM jobs WHERE cancel_requested IS NOT NULL AND (owner = ? OR "
                "owner IN (SELECT owner FROM owners WHERE adopted_by = ?))",
                (self.writer.owner, self.writer.owner),
            ).fetchall()
            connection.executemany("UPDATE jobs SET cancel_requested = NULL WHERE id = ?", rows)
            return {row[0] for row in rows}

        asked = self.writer.transaction(take)
        if asked:
            logger.info("cancelling %d jobs another process asked to cancel", len(asked))
            self.writer.recoverer.cancel(asked)

    def prune(self) -> int:
        """Delete finished jobs older than ``keep_finished``, a chunk per transaction."""
        cutoff = self.writer.wall() - self.writer.config.keep_finished
        pruned = 0
        while True:
            count: int = self.writer.transaction(
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
            self.writer.commit_queued()  # enqueues waiting for their commit go first

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it, if no other process is in the way.

        Without a busy timeout: TRUNCATE waits for every reader, and commits wait behind it.
        A checkpoint that cannot finish now is done at a later round.
        """
        connection = self.writer.connection
        assert connection is not None
        connection.execute("PRAGMA busy_timeout=0")
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def count_rows(self) -> None:
        """Count the rows by state for ``stats()``, a range of rowids at a time.

        A week of history may be millions of rows: queued commits are served between ranges,
        so an enqueue never waits for more than one range's count.
        """
        connection = self.writer.connection
        assert connection is not None
        last = connection.execute("SELECT max(rowid) FROM jobs").fetchone()[0] or 0
        counts: dict[str, int] = {}
        for start in range(0, last + 1, _COUNT_CHUNK):
            for state, count in connection.execute(
                "SELECT state, count(*) FROM jobs WHERE rowid BETWEEN ? AND ? GROUP BY state",
                (start, start + _COUNT_CHUNK - 1),
            ):
                counts[str(state)] = counts.get(str(state), 0) + count
            self.writer.commit_queued()
        self.writer.count(counts)

    def release_all(self) -> None:
        """Release every unfinished job this process holds, in one transaction; close.

        The rows are not rewritten: the owner row is marked released, which frees them all
        (and the few that were running are marked queued), so that a shutdown with 100,000
        jobs waiting costs a few rows, well within the shutdown's deadline.
        """
        connection = self.writer.connection
        assert connection is not None
        try:

            def release(connection: sqlite3.Connection) -> int:
                connection.execute(
                    "UPDATE jobs SET state = 'queued' "
                    "WHERE owner = ? AND state = 'running' AND finished_at IS NULL",
                    (self.writer.owner,),
                )
                count: int = connection.execute(
                    "SELECT count(*) FROM jobs WHERE finished_at IS NULL AND (owner = ? OR "
                    "owner IN (SELECT owner FROM owners WHERE adopted_by = ?))",
                    (self.writer.owner, self.writer.owner),
                ).fetchone()[0]
                connection.execute(
                    "UPDATE owners SET released = 1, adopted_by = NULL, heartbeat = ? "
                    "WHERE owner = ? OR adopted_by = ?",
                    (self.writer.wall(), self.writer.owner, self.writer.owner),
                )
                if count == 0:
                    connection.execute("DELETE FROM owners WHERE owner = ?", (self.writer.owner,))
                return count

            released = self.writer.transaction(release)
            if released:
                logger.info(
                    "%d unfinished jobs kept in the journal %s for the next start",
                    released,
                    self.writer.path,
                )
            self.checkpoint()
        except Exception:
            logger.exception(
                "could not release this process's jobs in the journal %s", self.writer.path
            )
        finally:
            connection.close()


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


def local_boot_id() -> str | None:
    """This boot of this kernel (Linux), shared by every container on it; None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip() or None
    except OSError:
        return None


def boot_clock() -> float | None:
    """Seconds since boot, sleep included, that no wall clock step moves (Linux); else None."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return None if clock is None else time.clock_gettime(clock)


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), if ``/proc`` says; else None."""
    state = _process_state(pid)
    return None if state is None else state[1]


def _process_state(pid: int) -> tuple[str, int] | None:
    """Process ``pid``'s state letter and start time from ``/proc``; None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ...": comm may hold spaces and parentheses; field 22 is the start.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
