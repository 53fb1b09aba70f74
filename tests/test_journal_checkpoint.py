"""The journal's checkpoints: a commit never copies the WAL into the file (its syncs would
stall every task awaiting that commit); the checkpoint thread does, and stops with the
journal."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from backburner import JournalConfig
from backburner._journal import _checkpoint
from backburner._journal._writer import Journal

from .journal_jobs import NoRecovery

pytestmark = pytest.mark.anyio


def _size(path: Path | str) -> int:
    return Path(path).stat().st_size


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("backburner-checkpoint-")]


async def _write(journal: Journal, start: int, count: int) -> None:
    """``count`` rows of about 2 kB each, each awaited by its own task (a few commits)."""
    payload = '{"args":["' + "x" * 2000 + '"]}'
    rows = [
        (f"job-{n}", "tests.record", "default", payload, None, None, float(n), None)
        for n in range(start, start + count)
    ]
    await asyncio.gather(*(journal.ainsert(row) for row in rows))


async def test_commits_leave_the_wal_to_the_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6 MB of commits (SQLite would checkpoint in the commit after 4 MB) leave the file as
    it was while the checkpoint thread is held back; once it is not, it copies them."""
    path = tmp_path / "jobs.sqlite3"
    allowed = threading.Event()
    wanted = _checkpoint.Checkpointer.wanted

    def held_back(self: _checkpoint.Checkpointer) -> None:
        if allowed.is_set():
            wanted(self)

    monkeypatch.setattr(_checkpoint.Checkpointer, "wanted", held_back)
    journal = Journal(JournalConfig(path), NoRecovery())
    await journal.open()
    try:
        assert len(_checkpoint_threads()) == 1
        size = _size(path)
        await _write(journal, 0, 3000)
        assert _size(f"{path}-wal") > 5_000_000
        assert _size(path) == size, "a commit copied the WAL into the file"
        allowed.set()
        await _write(journal, 3000, 1)
        deadline = time.monotonic() + 60
        while _size(path) == size:
            assert time.monotonic() < deadline, "the checkpoint thread never copied the WAL"
            await asyncio.sleep(0.01)
    finally:
        await journal.close(30)
    assert _checkpoint_threads() == []
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3001,)
    finally:
        connection.close()


async def test_the_checkpoint_thread_stops_when_the_journal_file_is_replaced(
    tmp_path: Path,
) -> None:
    """Its connection finds the WAL by the file's name: it must not touch a new journal's."""
    path = tmp_path / "jobs.sqlite3"
    journal = Journal(JournalConfig(path), NoRecovery())
    await journal.open()
    try:
        await _write(journal, 0, 1)
        assert len(_checkpoint_threads()) == 1
        await asyncio.to_thread(path.unlink)
        with pytest.raises(Exception, match="was deleted or renamed"):
            await _write(journal, 1, 1)
        assert _checkpoint_threads() == []
    finally:
        await journal.close(30)
