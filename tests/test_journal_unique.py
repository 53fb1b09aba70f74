"""Unique keys held in the journal: one unfinished job per key across the processes sharing it;
and ``lookup`` answered from the journal for another process's job.

Two executors on one journal file play two processes (each is an owner of its own, as a second
process would be); ``tests/e2e/test_box.py`` runs the same across real uvicorn workers.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from backburner import Backburner, DuplicateJob, JobStatus
from backburner._journal._file import _MIGRATIONS, APPLICATION_ID, open_file

from . import journal_jobs
from .journal_jobs import holds_key, record, reports

pytestmark = pytest.mark.anyio


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture(autouse=True)
def clear_calls() -> None:
    journal_jobs.calls.clear()
    journal_jobs.key_free.clear()


async def test_a_key_another_process_holds_returns_a_handle_on_its_job(path: Path) -> None:
    """The second enqueue writes nothing and hands back the holder; awaiting it waits for it."""
    journal_jobs.key_free["a"] = asyncio.Event()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        held = await one.aenqueue(holds_key, "a")
        other = two.enqueue(holds_key, "a")
        also = await two.aenqueue(holds_key, "a")
        assert other.id == also.id == held.id
        assert other.status is JobStatus.SENT  # its part in this process is over
        assert "another process sharing the journal" in repr(other.hooks.where())  # type: ignore[union-attr]
        waiter = asyncio.ensure_future(other.wait())
        await asyncio.sleep(0.3)  # (a look at its row or two: it is still running there)
        assert not waiter.done()
        journal_jobs.key_free["a"].set()
        await held
        await asyncio.wait_for(waiter, 10)
        ended: JobStatus = other.status  # (read again: the journal said so meanwhile)
        assert ended is JobStatus.SUCCEEDED
        assert other.result() is None  # (its JSON result, from the journal)
    assert journal_jobs.calls == [("holds_key", "a")]
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


async def until_finished_on_disk(path: Path, job_id: str) -> None:
    """Poll the journal (a deadline of 10 s) until the job's end is committed."""
    for _ in range(1000):
        with sqlite3.connect(path) as connection:
            query = "SELECT finished_at FROM jobs WHERE id = ?"
            if connection.execute(query, (job_id,)).fetchone()[0] is not None:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id}'s end was never written")


async def test_a_key_is_free_again_once_its_job_ended_in_the_other_process(path: Path) -> None:
    journal_jobs.key_free["b"] = asyncio.Event()
    journal_jobs.key_free["b"].set()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        first = one.enqueue(holds_key, "b")
        await first
        await until_finished_on_disk(path, first.id)  # (its end is written a moment later)
        second = two.enqueue(holds_key, "b")
        assert second.id != first.id
        await second
    assert journal_jobs.calls == [("holds_key", "b"), ("holds_key", "b")]


async def test_on_duplicate_raise_names_the_other_processes_job(path: Path) -> None:
    journal_jobs.key_free["c"] = asyncio.Event()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        held = one.enqueue(holds_key, "c")
        with pytest.raises(DuplicateJob) as raised:
            two.options(on_duplicate="raise").enqueue(holds_key, "c")
        assert raised.value.existing.id == held.id  # type: ignore[attr-defined]
        # Refused: nothing of it is held here, in memory or on disk.
        journal_jobs.key_free["c"].set()
        await held
    assert journal_jobs.calls == [("holds_key", "c")]


async def test_a_batch_with_a_refused_key_commits_every_other_job(path: Path) -> None:
    """One commit carries many jobs: a duplicate among them takes nothing else down."""
    journal_jobs.key_free["d"] = asyncio.Event()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        held = one.enqueue(holds_key, "d")
        jobs = await asyncio.gather(
            *(two.aenqueue(record, n) for n in range(20)), two.aenqueue(holds_key, "d")
        )
        assert jobs[-1].id == held.id
        await two.join()
        journal_jobs.key_free["d"].set()
    assert sorted(v for name, v in journal_jobs.calls if name == "record") == list(range(20))


def test_a_journal_of_schema_2_with_duplicate_keys_keeps_the_oldest_holder(path: Path) -> None:
    """Upgrading a journal where two processes each held a key: the later job runs keyless."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
    for step in _MIGRATIONS[:2]:  # the schema as backburner wrote it before version 3
        for statement in re.sub(r"--[^\n]*", "", step).split(";"):
            if statement.strip():
                connection.execute(statement)
    for number, key in enumerate(["k", "k", "other", None]):
        connection.execute(
            "INSERT INTO jobs (id, name, queue, payload, state, unique_key, enqueued_at) "
            "VALUES (?, 'tests.record', 'default', '{\"args\":[1]}', 'queued', ?, 0)",
            (f"job-{number}", key),
        )
    connection.execute("PRAGMA user_version=2")
    connection.close()
    open_file(path, "NORMAL").close()  # migrates to 3
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT id, unique_key FROM jobs ORDER BY rowid").fetchall() == [
            ("job-0", "k"),
            ("job-1", None),
            ("job-2", "other"),
            ("job-3", None),
        ]


# lookup() from any process: the journal is the second place it asks.


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` (a deadline of 10 s): another process's writes arrive with its commits."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


async def test_lookup_answers_for_another_processes_job_from_enqueue_to_its_result(
    path: Path,
) -> None:
    journal_jobs.key_free["p"] = asyncio.Event()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        job = one.enqueue(reports, "p")
        first = await two.lookup(job.id)
        assert first is not None
        assert first.status in (JobStatus.PENDING, JobStatus.RUNNING)
        assert first.name == "reports"

        async def reported() -> bool:
            info = await two.lookup(job.id)
            return info is not None and info.progress is not None

        await until(reported, "its progress in the other process")  # (about once a second)
        info = await two.lookup(job.id)
        assert info is not None
        assert info.status is JobStatus.RUNNING
        assert info.progress is not None
        assert (info.progress.done, info.progress.total) == (1, 3)
        assert info.progress.message == "one of three"
        assert info.started_at is not None
        journal_jobs.key_free["p"].set()
        await job

        async def succeeded() -> bool:
            info = await two.lookup(job.id)
            return info is not None and info.status is JobStatus.SUCCEEDED

        await until(succeeded, "its success in the other process")
        info = await two.lookup(job.id)
        assert info is not None
        assert info.has_result
        assert info.result == {"key": "p", "done": 3}
        assert info.expires_at is not None
        assert info.finished_at is not None
        assert await two.lookup("no-such-job") is None


async def test_another_processes_finished_job_expires_as_in_memory(path: Path) -> None:
    journal_jobs.key_free["q"] = asyncio.Event()
    journal_jobs.key_free["q"].set()
    async with Backburner(journal=path) as one, Backburner(journal=path, result_ttl=1.0) as two:
        job = one.enqueue(reports, "q")
        await job

        async def expired() -> bool:
            info = await two.lookup(job.id)
            return info is not None and info.status is JobStatus.EXPIRED

        await until(expired, "its tombstone")
        info = await two.lookup(job.id)
        assert info is not None
        assert not info.has_result
        assert info.result is None


async def test_another_processes_job_carries_its_meta_for_authorize(path: Path) -> None:
    # authorize(request, info) decides on info.meta: a poll that lands on another worker must
    # see the owner the job was enqueued with, not an empty meta (refused, or worse: let in by
    # a check like meta.get("user") == session.get("user") for an anonymous request).
    journal_jobs.key_free["m"] = asyncio.Event()
    journal_jobs.key_free["m"].set()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        job = one.options(meta={"user": 7, "tags": ["a"]}).enqueue(reports, "m")
        plain = one.enqueue(record, 1)
        await job
        await plain

        async def both_ended() -> bool:
            infos = [await two.lookup(job.id), await two.lookup(plain.id)]
            return all(info is not None and info.finished for info in infos)

        await until(both_ended, "both jobs' ends in the other process")
        info = await two.lookup(job.id)
        assert info is not None
        assert info.meta == {"user": 7, "tags": ["a"]}
        with pytest.raises(TypeError):
            info.meta["user"] = 8  # type: ignore[index]  # read-only, as in its own process
        other = await two.lookup(plain.id)
        assert other is not None
        assert other.meta == {}
