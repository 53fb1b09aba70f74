"""The journal's checkpointer: copies the WAL into the file on a thread of its own.

SQLite checkpoints a WAL itself once it passes 1,000 pages, inside the commit that passed it,
and a checkpoint syncs the WAL and the file (``synchronous=NORMAL`` or ``FULL``). On the
writer's thread that puts an ``fsync`` or two, milliseconds on a quiet disk and hundreds on a
busy one, in front of every task awaiting that commit: the tail of ``await aenqueue``.

So the writer's connection does not checkpoint (``wal_autocheckpoint=0``) and this thread does,
on a connection of its own, in ``PASSIVE`` mode (which never blocks a writer): after a commit,
at most every ``_EVERY`` seconds. A commit is durable as before, since it is in the WAL (and
synced there under ``"power"``) before it returns; the checkpoint only moves it into the
file, and the WAL is reused from its start once all of it was copied. The writer's
housekeeping still truncates the WAL now and then (``Owners.checkpoint``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpointer"]

logger = logging.getLogger("backburner")

# The most often the WAL is copied into the file, in seconds: under a steady load of commits,
# about as often as SQLite's own 1,000 pages would, with each copy's syncs off the writer.
_EVERY = 0.2
# How long stop() waits for a checkpoint under way (an fsync on a stalled disk) to finish.
_STOP_WAIT = 5.0


class Checkpointer:
    """One journal's checkpoints, on a daemon thread, from ``start()`` to ``stop()``."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the connection (raising ``sqlite3.Error`` if it cannot) and start the thread."""
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # (The syncs a checkpoint makes are its connection's: the writer's, as it would.)
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            connection.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name=f"backburner-checkpoint-{self.path.name}"
        )
        self._thread.daemon = True  # a stalled disk must not hold the process; stop() joins
        self._thread.start()

    def wanted(self) -> None:
        """A commit was written: copy the WAL soon (the writer's thread, after each commit)."""
        self._wanted.set()

    def stop(self) -> None:
        """End the thread after the checkpoint under way, if any; its connection is closed."""
        self._stopping.set()
        self._wanted.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(_STOP_WAIT)

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    return
                self._wanted.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # another process's checkpoint, a full disk
                    logger.debug("the journal %s: checkpoint not done (%s)", self.path, exc)
                self._stopping.wait(_EVERY)
        finally:
            connection.close()
