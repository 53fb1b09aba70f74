"""Unique keys held in the journal: one unfinished job per key across the processes sharing it;
and ``lookup`` answered from the journal for another process's job.

Two executors on one journal file play two processes (each is an owner of its own, as a second
process would be); ``tests/e2e/test_box.py`` runs the same across real uvicorn workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from backburner import Backburner, DuplicateJob, JobInfo, JobStatus, JournalConfig
from backburner._journal import _shared
from backburner._journal._file import _MIGRATIONS, APPLICATION_ID, open_file
from backburner._journal._shared import request_cancel, retry_row

from . import journal_jobs
from .journal_jobs import Flaky, fails_keyed, fails_once_then_holds, holds_key, record, reports
from .test_journal import insert_orphan

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
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


async def until_finished_on_disk(path: Path, job_id: str) -> None:
    """Poll the journal (a deadline of 10 s) until the job's end is committed."""
    for _ in range(1000):
        with contextlib.closing(sqlite3.connect(path)) as connection, connection:
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
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
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


async def until_status(bg: Backburner, job_id: str, status: JobStatus, what: str) -> JobInfo:
    """Poll ``bg.lookup`` (as ``until``) until the job has ``status``; what it answered then."""
    seen: list[JobInfo] = []

    async def has_status() -> bool:
        info = await bg.lookup(job_id)
        if info is None or info.status is not status:
            return False
        seen.append(info)
        return True

    await until(has_status, what)
    return seen[0]


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
        info = await until_status(
            two, job.id, JobStatus.SUCCEEDED, "its success in the other process"
        )
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
        info = await until_status(two, job.id, JobStatus.EXPIRED, "its tombstone")
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


async def until_calls(count: int) -> None:
    """Poll (a deadline of 10 s) until the jobs were called ``count`` times."""
    for _ in range(1000):
        if len(journal_jobs.calls) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"calls: {journal_jobs.calls}")


async def test_a_dead_job_another_process_retried_is_not_run_again_by_its_owner(
    path: Path,
) -> None:
    """A dashboard on worker B retried A's dead job and B runs it: retrying it on A (still in
    A's dead list) is refused, not a second run beside B's."""
    journal_jobs.key_free["r"] = asyncio.Event()
    slow, quick = JournalConfig(path, heartbeat=60, lease=300), JournalConfig(path, heartbeat=0.05)
    async with Backburner(journal=slow) as one, Backburner(journal=quick) as two:
        failed = one.enqueue(fails_once_then_holds, "r")
        with pytest.raises(Flaky):
            await failed
        await until_finished_on_disk(path, failed.id)
        assert retry_row(path, failed.id)  # what B's dashboard does
        await until_calls(2)  # B claimed it at its heartbeat, and runs it
        with pytest.raises(ValueError, match="no longer failed or dead"):
            one.retry(failed)
        assert [job.id for job in one.failures()] == [failed.id]  # as it was
        journal_jobs.key_free["r"].set()
        await two.join()
        await one.join()
    assert journal_jobs.calls == [("fails_once_then_holds", "r")] * 2


async def test_a_dead_job_whose_key_another_process_holds_is_not_retried_beside_it(
    path: Path,
) -> None:
    """Retrying a dead unique job while another process's job holds its key is a duplicate."""
    journal_jobs.key_free["k"] = asyncio.Event()
    async with Backburner(journal=path) as one, Backburner(journal=path) as two:
        failed = one.enqueue(fails_keyed, "k")
        with pytest.raises(Flaky):
            await failed
        await until_finished_on_disk(path, failed.id)
        holder = await two.aenqueue(holds_key, "k")  # the same key: keyed:k
        await until_calls(2)
        with pytest.raises(DuplicateJob) as raised:
            one.retry(failed)
        assert raised.value.existing == holder.id
        journal_jobs.key_free["k"].set()
        await holder
    assert journal_jobs.calls == [("fails_keyed", "k"), ("holds_key", "k")]


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_a_job_asked_to_cancel_whose_process_died_is_cancelled_not_run(
    path: Path, state: str
) -> None:
    """A dashboard asked the job's process to cancel it, but that process had died: the
    process that takes its jobs over ends it as cancelled, and never runs it."""
    async with Backburner(journal=path):
        pass
    orphan = insert_orphan(path, name="tests.record", state=state)
    assert request_cancel(path, orphan, 1.0)
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == []
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute(
            "SELECT state, finished_at IS NOT NULL, cancel_requested FROM jobs WHERE id = ?",
            (orphan,),
        ).fetchone() == ("cancelled", 1, None)


async def test_the_dead_jobs_of_every_process_are_read_without_a_scan_of_finished_ones(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's dead list reads the failed and dead rows: its work does not grow with
    the week of succeeded jobs the journal keeps (``keep_finished``)."""
    async with Backburner(journal=path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        insert = (
            "INSERT INTO jobs (id, name, queue, payload, state, enqueued_at, finished_at) "
            "VALUES (?, 'tests.record', 'default', '{}', ?, 0, ?)"
        )
        connection.executemany(insert, ((f"ok-{n}", "succeeded", 1e9 + n) for n in range(20000)))
        connection.executemany(insert, ((f"dead-{n}", "dead", 1e9 - n) for n in range(3)))
    steps = [0]
    opened = _shared.connect

    def counting(path: str | Path, mode: str = "rw") -> sqlite3.Connection:
        connection = opened(path, mode)
        connection.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 1000)
        return connection

    monkeypatch.setattr(_shared, "connect", counting)
    assert [row.id for row in _shared.dead_rows(path, 100)] == ["dead-0", "dead-1", "dead-2"]
    assert steps[0] < 20  # (thousands of SQLite instructions: a scan of 20,000 rows is ~400)


async def test_a_dead_job_retried_runs_whatever_cancel_was_asked_before_it_ended(
    path: Path,
) -> None:
    """A cancel request its dead process never picked up is older than the retry: it runs."""
    async with Backburner(journal=path):
        pass
    orphan = insert_orphan(path, name="tests.record", state="queued")
    assert request_cancel(path, orphan, 1.0)
    with (
        contextlib.closing(sqlite3.connect(path)) as connection,
        connection,
    ):  # it ended before its process looked, then died
        connection.execute(
            "UPDATE jobs SET state = 'dead', finished_at = 2 WHERE id = ?", (orphan,)
        )
    assert retry_row(path, orphan)
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == [("record", 7)]


FORKED = """
import asyncio, os, sys
from backburner import Backburner  # imported before the fork, as gunicorn --preload does
from tests.journal_jobs import record

async def enqueue(path):
    async with Backburner(journal=path) as bg:
        job = await bg.aenqueue(record, os.getpid())
        await bg.join()
        return job.id

asyncio.run(enqueue(sys.argv[1]))  # the master made the journal, and a job of its own
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        try:
            print(asyncio.run(enqueue(sys.argv[1])), flush=True)
        finally:
            os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_workers_forked_after_import_make_ids_of_their_own(path: Path) -> None:
    """gunicorn --preload imports the app, then forks its workers: ids made in the workers
    must not be the master's or each other's, or their rows in the shared journal collide
    (every enqueue of the second worker failed on the journal's unique ids)."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(path)],
        capture_output=True, text=True, timeout=60, check=True,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    ids = done.stdout.split()
    assert len(ids) == 2, done.stderr
    assert ids[0].partition("-")[0] != ids[1].partition("-")[0]
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3,)


async def test_another_processes_scheduled_and_retrying_jobs_are_cancelled_on_request(
    path: Path,
) -> None:
    """The dashboard of another worker asks: a job waiting for its time (delayed, or to retry)
    is cancelled by its process within a second or so, and never runs."""
    async with Backburner(journal=path) as one:
        delayed = one.enqueue_in(3600, record, 1)
        retrying = one.enqueue(journal_jobs.fails_first, 2)  # (its retry waits 30 s)
        await until_calls(1)
        assert request_cancel(path, delayed.id, 1.0)  # what another worker's dashboard does
        assert request_cancel(path, retrying.id, 1.0)
        await asyncio.wait_for(delayed.wait(), 10)
        await asyncio.wait_for(retrying.wait(), 10)
        assert delayed.status is JobStatus.CANCELLED
        assert retrying.status is JobStatus.CANCELLED
    assert journal_jobs.calls == [("fails_first", 2)]
