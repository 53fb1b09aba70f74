"""The journal in one process: what it accepts, what it keeps, what a restart runs again.

Restarts are simulated with two executors on one file, one after the other; a crash, with a
row whose owner is a process that no longer exists. Real processes are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.types import Message

from backburner import (
    Backburner,
    BackburnerMiddleware,
    DuplicateJob,
    JobStatus,
    JournalConfig,
    JournalError,
    Periodic,
    QueueConfig,
    QueueFull,
    job,
)
from backburner._journal._file import SCHEMA_VERSION
from backburner._journal._owners import (
    _process_state,
    boot_clock,
    local_boot_id,
    local_host,
    process_start,
)
from backburner._registry import default_name, lookup
from backburner.testing import ManualClock

from . import journal_jobs
from .journal_jobs import (
    counted,
    default_named,
    fails_first,
    fails_unprintably,
    fails_with,
    not_registered,
    reads_its_row,
    record,
    record_sync,
    tick,
)
from .logs import when_logged

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def clear_calls() -> None:
    journal_jobs.calls.clear()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


#: SQL: the row is free for any process to claim (held by no one, or by a released owner).
FREE = (
    "(finished_at IS NULL AND "
    "(owner IS NULL OR owner IN (SELECT owner FROM owners WHERE released)))"
)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def rows(path: Path, columns: str = "state") -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {columns} FROM jobs ORDER BY rowid").fetchall()
    finally:
        connection.close()


def insert_orphan(path: Path, *, name: str, state: str, crashes: int = 0, args: str = "[7]") -> str:
    """A row as a process that died (pid 999999999 never exists) would have left it."""
    owner = f"{local_host()}:999999999:dead"
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, attempt, "
            "crashes, enqueued_at) VALUES (?, ?, 'default', ?, ?, ?, 9e12, 1, ?, 0)",
            (f"orphan-{name}", name, f'{{"args":{args}}}', state, owner, crashes),
        )
        connection.execute(
            "INSERT OR REPLACE INTO owners (owner, heartbeat, started_at) VALUES (?, 9e12, 0)",
            (owner,),
        )
    connection.close()
    return f"orphan-{name}"


async def make_journal(path: Path) -> None:
    async with Backburner(journal=path):
        pass


# The registry.


def test_job_registers_a_function_under_its_name_or_module_and_qualname() -> None:
    assert lookup("tests.record") is not None
    assert lookup("tests.record").fn is record  # type: ignore[union-attr]
    assert default_name(default_named) == "tests.journal_jobs:default_named"
    assert lookup("tests.journal_jobs:default_named").fn is default_named  # type: ignore[union-attr]


def test_a_name_taken_by_another_function_is_refused_naming_both() -> None:
    async def other() -> None: ...

    with pytest.raises(ValueError, match=r"'tests.record' is already registered .* another name"):
        job(name="tests.record")(other)


def test_defining_the_same_module_function_again_replaces_its_entry() -> None:
    namespace: dict[str, Any] = {"__name__": "tests.reloaded"}
    source = "from backburner import job\n@job(name='tests.reloaded')\ndef again(): pass\n"
    exec(source, namespace)
    first = namespace["again"]
    exec(source, namespace)  # the module imported a second time (a reload)
    assert lookup("tests.reloaded").fn is namespace["again"] is not first  # type: ignore[union-attr]


def test_a_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        job(name="  ")(not_registered)


# What a journaled executor accepts.


async def test_a_journaled_job_is_on_disk_when_enqueue_returns(path: Path) -> None:
    async with Backburner(journal=path) as bg:
        queued = bg.enqueue(record, {"user": 42, "tags": ["a", "b"]})
        assert rows(path, "id, name, payload, state") == [
            (queued.id, "tests.record", '{"args":[{"user":42,"tags":["a","b"]}]}', "queued")
        ]
        await bg.join()
    assert rows(path, "state, finished_at IS NOT NULL") == [("succeeded", 1)]


async def test_an_error_message_utf8_cannot_encode_is_written_escaped(path: Path) -> None:
    # A lone surrogate (a file name read with surrogateescape) in an error's message failed
    # the whole batch of writes it was in: the other job's end was lost with it.
    async with Backburner(journal=path) as bg:
        failed = bg.enqueue(fails_with, "no such file: caf\udce9.csv")
        done = bg.enqueue(record, 1)
        await failed.wait()
        await done
    assert rows(path, "state, error") == [
        ("failed", "ValueError: no such file: caf\\udce9.csv"),
        ("succeeded", None),
    ]


async def test_an_error_whose_str_raises_is_written_by_its_type(path: Path) -> None:
    # Its end was not written at all: the row stayed queued, to be run again after a restart.
    async with Backburner(journal=path) as bg:
        failed = bg.enqueue(fails_unprintably)
        await failed.wait()
    assert rows(path, "state, error") == [
        ("failed", "Unprintable: (str() of the exception failed)"),
    ]


async def test_aenqueue_awaits_the_commit_without_blocking_the_loop(path: Path) -> None:
    async with Backburner(journal=path) as bg:
        jobs = await asyncio.gather(*(bg.aenqueue(record, n) for n in range(200)))
        assert len(rows(path)) == 200
        assert [await j for j in jobs] == list(range(200))


async def test_enqueue_from_other_threads_is_committed_by_the_writer(path: Path) -> None:
    async with Backburner(journal=path, workers=8) as bg:

        def enqueue_many(start: int) -> None:
            for n in range(start, start + 100):
                bg.enqueue(record_sync, n)

        threads = [threading.Thread(target=enqueue_many, args=(i * 100,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        await bg.join()
    assert sorted(v for _, v in journal_jobs.calls) == list(range(400))
    assert rows(path, "count(*)") == [(400,)]


async def test_an_unregistered_function_is_refused_at_enqueue_saying_how_to_fix_it(
    path: Path,
) -> None:
    async def local_job() -> None: ...

    async with Backburner(journal=path) as bg:
        with pytest.raises(TypeError, match=r"not_registered cannot be a journaled job: it is not"):
            bg.enqueue(not_registered, 1)
        with pytest.raises(TypeError, match=r"it is a lambda.*@job\(\)"):
            bg.enqueue(lambda: None)
        with pytest.raises(TypeError, match="defined inside another function"):
            bg.enqueue(local_job)
        with pytest.raises(TypeError, match="it is not registered"):
            await bg.aenqueue(not_registered, 1)
    assert rows(path) == []


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
_NOT_JSON = st.one_of(
    st.tuples(st.integers()),
    st.sets(st.integers(), min_size=1),
    st.binary(min_size=1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.dictionaries(st.integers(), st.integers(), min_size=1),
    st.builds(object),
    st.complex_numbers(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON)
def test_json_arguments_are_accepted_and_come_back_equal_after_a_restart(value: Any) -> None:
    async def enqueue(path: Path) -> None:
        bg = Backburner(journal=path)
        await bg.open()  # accepted, not run: the next executor runs it from the journal
        bg.enqueue(record, value)
        await bg.aclose()

    async def run(path: Path) -> None:
        async with Backburner(journal=path) as bg:
            await bg.join()

    journal_jobs.calls.clear()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(enqueue(Path(folder) / "jobs.sqlite3"))
        asyncio.run(run(Path(folder) / "jobs.sqlite3"))
    assert journal_jobs.calls == [("record", value)]


@settings(max_examples=60, deadline=None)
@given(bad=_NOT_JSON, as_keyword=st.booleans(), nested=st.booleans())
def test_a_non_json_argument_is_refused_naming_it(bad: Any, as_keyword: bool, nested: bool) -> None:
    from backburner._journal._store import check_arguments

    value = {"inner": [bad]} if nested else bad
    args, kwargs = ((), {"value": value}) if as_keyword else ((1, value), {})
    where = "keyword argument 'value'" if as_keyword else "argument 2"
    with pytest.raises(TypeError, match=rf"^{where} of journaled job f is .*stores arguments as"):
        check_arguments("f", args, kwargs)


async def test_a_per_call_option_a_journal_cannot_store_is_refused(path: Path) -> None:
    async with Backburner(journal=path, queues={"mail": QueueConfig()}) as bg:
        with pytest.raises(TypeError, match=r"options\(retry_on=...\) cannot be given per call"):
            bg.options(retry_on=(KeyError,)).enqueue(record, 1)
        sent = bg.options(queue="mail", retries=5, timeout=3).enqueue(record, 1)
        await sent
    assert rows(path, "queue, payload") == [
        ("mail", '{"args":[1],"options":{"queue":"mail","retries":5,"timeout":3}}')
    ]


# Settings.


def test_bad_journal_settings_are_refused_where_they_are_written(path: Path) -> None:
    with pytest.raises(ValueError, match="durability= applies to a journal"):
        Backburner(durability="power")
    with pytest.raises(ValueError, match="durability must be 'normal'"):
        Backburner(journal=path, durability="fsync")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="journal must be a file path or a JournalConfig"):
        Backburner(journal=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most half of lease"):
        JournalConfig(path, lease=10, heartbeat=6)
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        JournalConfig(path, max_attempts=0)


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("power", 2)])
async def test_durability_selects_sqlites_synchronous_mode(
    path: Path, durability: Any, synchronous: int
) -> None:
    async with Backburner(journal=path, durability=durability) as bg:
        stats = bg.stats().journal
        assert stats is not None
        assert stats.durability == durability
        assert stats.synchronous == synchronous


async def test_the_journal_file_is_created_readable_by_its_owner_only(path: Path) -> None:
    await make_journal(path)
    assert file_mode(path) == 0o600


# Startup checks.


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\).*move it aside"),
        (b"garbage" * 1000, "is not an SQLite database"),
        (b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 10, "truncated"),
    ],
)
async def test_a_bad_file_fails_open_saying_what_to_do(
    path: Path, content: bytes, message: str
) -> None:
    await asyncio.to_thread(path.write_bytes, content)
    bg = Backburner(journal=path)
    with pytest.raises(JournalError, match=message):
        await bg.open()
    assert not bg.running


async def test_a_cut_short_journal_fails_open(path: Path) -> None:
    async with Backburner(journal=path) as bg:
        for _ in range(3000):
            bg.enqueue(record, "x" * 100)
    cut_in_half(path)
    with pytest.raises(JournalError, match="truncated"):
        await Backburner(journal=path).open()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 1 MB tmpfs of its own (mounting needs root, as in CI)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_a_journal_a_full_disk_left_mid_checkpoint_opens_and_runs_every_job(
    small_disk: Path, tmp_path: Path
) -> None:
    """SQLite writes page 1 before it extends the file: a full disk leaves a short file.

    The WAL still holds every page, so SQLite reads the file whole: it must open.
    """
    full = small_disk / "jobs.sqlite3"
    accepted: list[int] = []
    bg = Backburner(journal=full, max_pending=100_000)
    await bg.open()  # accepts, runs nothing

    async def fill(start: int) -> None:
        for n in itertools.count(start, 50):
            await bg.aenqueue(record, [n, "x" * 100])
            accepted.append(n)

    outcomes = await asyncio.gather(*(fill(k) for k in range(50)), return_exceptions=True)
    assert all(isinstance(outcome, JournalError) for outcome in outcomes), outcomes
    assert "database or disk is full" in str(outcomes[0])
    await bg.aclose()  # its checkpoint writes page 1, then finds no room for the rest
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    for name in ("jobs.sqlite3", "jobs.sqlite3-wal"):  # (the -shm is rebuilt from the WAL)
        shutil.copy(small_disk / name, roomy / name)
    copy = roomy / "jobs.sqlite3"
    header = copy.read_bytes()[:100]
    pages, page_size = int.from_bytes(header[28:32], "big"), int.from_bytes(header[16:18], "big")
    assert copy.stat().st_size < pages * page_size  # the file this test is about
    async with Backburner(journal=copy, max_pending=100_000) as again:
        await again.join()
    assert len(accepted) > 100
    assert sorted(value[0] for _, value in journal_jobs.calls) == sorted(accepted)
    assert rows(copy, "DISTINCT state") == [("succeeded",)]


async def test_a_journal_from_a_newer_version_fails_open(path: Path) -> None:
    await make_journal(path)
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(JournalError, match=r"newer backburner .* Upgrade backburner"):
        await Backburner(journal=path).open()


async def test_another_programs_sqlite_database_is_not_taken_for_a_journal(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE accounts (id INTEGER)")
    connection.close()
    with pytest.raises(JournalError, match="not a backburner journal"):
        await Backburner(journal=path).open()


async def test_a_journal_in_a_missing_folder_fails_open(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        await Backburner(journal=tmp_path / "nowhere" / "jobs.sqlite3").open()


# Shutdown and restart.


async def test_shutdown_releases_unfinished_jobs_and_the_next_start_runs_them(path: Path) -> None:
    bg = Backburner(journal=path)
    await bg.open()  # accepts, runs nothing
    accepted = [bg.enqueue(record, n) for n in range(5)]
    report = await bg.aclose()
    assert report.journal == str(path)  # tmp_path is absolute
    assert {j.id for j in report.not_started} == {j.id for j in accepted}
    assert rows(path, f"state, {FREE}") == [("queued", 1)] * 5
    async with Backburner(journal=path) as again:
        await again.join()
    assert [v for _, v in journal_jobs.calls] == [0, 1, 2, 3, 4]
    assert rows(path, "id, state") == [(j.id, "succeeded") for j in accepted]


async def test_the_shutdown_log_says_unfinished_jobs_are_kept(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bg = Backburner(journal=path)
    await bg.open()
    bg.enqueue(record, 1)
    with caplog.at_level(logging.INFO, logger="backburner"):
        await bg.aclose()
    assert "kept in the journal" in caplog.text
    assert "run at the next start" in caplog.text


async def test_a_running_job_cut_short_by_shutdown_stays_unfinished_not_cancelled(
    path: Path,
) -> None:
    journal_jobs.started["cut-short"] = asyncio.Event()
    async with Backburner(journal=path, shutdown_timeout=0.2, cancel_grace=0.1) as bg:
        await bg.enqueue(record, "before")
        bg.enqueue(journal_jobs.blocks, "cut-short")
        await journal_jobs.started["cut-short"].wait()
    assert rows(path, f"state, {FREE}") == [("succeeded", 0), ("queued", 1)]


async def test_a_delayed_job_keeps_its_time_across_a_restart(path: Path) -> None:
    clock = ManualClock()
    async with Backburner(journal=path, clock=clock) as bg:
        later = bg.enqueue_in(60, record, "later")
        clock.advance(10)
    assert later.status is JobStatus.CANCELLED  # in memory; the journal keeps it
    async with Backburner(journal=path, clock=clock) as bg:
        assert bg.stats().total.scheduled == 1
        clock.advance(49)
        await bg.join()
        assert journal_jobs.calls == []
        clock.advance(1)
        await asyncio.sleep(0)
        await bg.join()
    assert journal_jobs.calls == [("record", "later")]
    assert rows(path, "id, state") == [(later.id, "succeeded")]


async def test_a_retry_waiting_job_keeps_its_time_and_attempt_across_a_restart(
    path: Path,
) -> None:
    clock = ManualClock()
    async with Backburner(journal=path, clock=clock) as bg:
        failing = bg.enqueue(fails_first, 5)
        await bg.join()
        assert failing.status is JobStatus.RETRYING
        assert failing.run_at == clock.now() + 30
    assert rows(path, "state, attempt, run_at, error") == [
        ("queued", 1, clock.now() + 30, "Flaky: first attempt fails")
    ]
    async with Backburner(journal=path, clock=clock) as bg:
        clock.advance(29)
        await bg.join()
        assert len(journal_jobs.calls) == 1
        clock.advance(1)
        await asyncio.sleep(0)
        await bg.join()
    assert journal_jobs.calls == [("fails_first", 5), ("fails_first", 5)]
    assert rows(path, "state, attempt") == [("succeeded", 2)]


async def test_a_dead_processes_jobs_are_taken_and_its_running_job_counts_a_crash(
    path: Path,
) -> None:
    await make_journal(path)
    orphan = insert_orphan(path, name="tests.record", state="running")
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == [("record", 7)]
    assert rows(path, "id, state, crashes, attempt") == [(orphan, "succeeded", 1, 2)]


async def test_a_jobs_start_is_committed_before_its_code_runs(path: Path) -> None:
    """So a job that kills its process has counted a crash (tests/e2e kills one for real)."""
    async with Backburner(journal=path, workers=8) as bg:
        for n in range(20):
            bg.enqueue(reads_its_row, str(path), f"marker-{n}")
        await bg.join()
    assert journal_jobs.calls == [("reads_its_row", [("running", 1)])] * 20


async def test_a_job_cancelled_while_its_start_is_written_ends_cancelled_and_frees_its_slot(
    path: Path,
) -> None:
    bg = Backburner(journal=path, workers=1)
    await bg.open()
    first, second = bg.enqueue(record, 1), bg.enqueue(record, 2)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the lock: no start commits
    try:
        await bg.start()
        before = first.status
        assert before is JobStatus.RUNNING  # its start is on its way to disk
        assert first.cancel()
        await first.wait()
        assert first.status is JobStatus.CANCELLED
        assert second.status is JobStatus.RUNNING  # in the slot the first freed
        assert journal_jobs.calls == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    await bg.join()
    await bg.aclose()
    assert journal_jobs.calls == [("record", 2)]
    assert rows(path, "state") == [("cancelled",), ("succeeded",)]


async def test_a_job_that_killed_its_process_max_attempts_times_is_dead_and_never_runs(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await make_journal(path)
    orphan = insert_orphan(path, name="tests.record", state="running", crashes=2)
    with caplog.at_level(logging.ERROR, logger="backburner"):
        async with Backburner(journal=JournalConfig(path, max_attempts=3)) as bg:
            await bg.join()
    assert journal_jobs.calls == []
    assert rows(path, "id, state, crashes") == [(orphan, "dead", 3)]
    assert f"job {orphan} (tests.record) is dead: its process died" in caplog.text


async def test_a_live_owners_jobs_are_never_taken(path: Path) -> None:
    await make_journal(path)
    owner = f"{local_host()}:{os.getppid()}:alive"  # our parent: a live process
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, enqueued_at)"
            " VALUES ('held', 'tests.record', 'default', '{\"args\":[1]}', 'queued', ?, 0, 0)",
            (owner,),
        )
        connection.execute(
            "INSERT INTO owners (owner, heartbeat, started_at) VALUES (?, 9e12, 0)", (owner,)
        )
    connection.close()
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == []
    assert rows(path, "state, owner") == [("queued", owner)]


async def test_a_stored_name_that_is_not_registered_is_marked_invalid_and_never_run(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await make_journal(path)
    orphan = insert_orphan(path, name="os:system", state="queued", args='["echo pwned"]')
    with caplog.at_level(logging.ERROR, logger="backburner"):
        async with Backburner(journal=path) as bg:
            await bg.join()
    assert rows(path, "id, state") == [(orphan, "invalid")]
    assert "no function is registered as 'os:system'" in caplog.text


async def test_unreadable_stored_arguments_mark_the_job_invalid(path: Path) -> None:
    await make_journal(path)
    orphan = insert_orphan(path, name="tests.record", state="queued", args='"not a list"')
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert rows(path, "id, state") == [(orphan, "invalid")]


async def test_recovery_takes_no_more_than_the_queue_has_room_for_and_the_rest_later(
    path: Path,
) -> None:
    bg = Backburner(journal=path, max_pending=20)
    await bg.open()
    for n in range(20):
        bg.enqueue(counted, n)
    await bg.aclose()
    connection = sqlite3.connect(path)  # a second batch, as another process might release
    with connection:
        connection.execute("UPDATE jobs SET owner = NULL")
    connection.close()
    small = Backburner(journal=JournalConfig(path, heartbeat=0.05, lease=1), max_pending=5)
    await small.open()
    assert small.stats().total.pending == 5 + 4  # max_pending plus the idle workers' room
    journal_jobs.counted_target[0] = 20
    journal_jobs.counted_enough.clear()
    await small.start()
    # Later rounds of the writer's housekeeping take the rest, as room frees up.
    assert await asyncio.to_thread(journal_jobs.counted_enough.wait, 30)
    await small.aclose()
    assert sorted(v for _, v in journal_jobs.calls) == list(range(20))


# A journal that goes away under a running process.


def _replace_with_another_journal(path: Path) -> None:
    other = path.with_name("other.sqlite3")
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE elsewhere (x)")
    connection.close()
    os.replace(other, path)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (Path.unlink, "was deleted or renamed: nothing is at that path any more"),
        (lambda path: path.rename(path.with_name("moved.sqlite3")), "was deleted or renamed"),
        (_replace_with_another_journal, "was replaced: the path names another file"),
    ],
    ids=["deleted", "renamed", "replaced"],
)
async def test_a_journal_deleted_or_replaced_while_running_refuses_enqueues_and_says_so(
    path: Path, change: Callable[[Path], object], said: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="backburner")
    async with Backburner(journal=path) as bg:
        await bg.enqueue(record, "before")
        journal = bg.stats().journal
        assert journal is not None
        assert journal.healthy
        assert journal.problem is None
        await asyncio.to_thread(change, path)
        expected = f"the journal {path} {said}"
        with pytest.raises(JournalError, match=re.escape(expected)):
            bg.enqueue(record, "after")
        with pytest.raises(JournalError, match=re.escape(expected)):
            await bg.aenqueue(record, "after, awaited")
        journal = bg.stats().journal
        assert journal is not None
        assert not journal.healthy
        assert journal.problem is not None
        assert journal.problem.startswith(expected)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert expected in errors[0].getMessage()
    assert journal_jobs.calls == [("record", "before")]


async def test_a_journal_deleted_while_idle_is_noticed_at_the_next_heartbeat(path: Path) -> None:
    """With no enqueue to notice it, the heartbeat does: a readiness check sees it."""
    async with Backburner(journal=JournalConfig(path, lease=1.0, heartbeat=0.05)) as bg:
        await asyncio.to_thread(path.unlink)
        deadline = time.monotonic() + 30
        while (journal := bg.stats().journal) is not None and journal.healthy:
            assert time.monotonic() < deadline, "the heartbeat never noticed"
            await asyncio.sleep(0.01)
        assert journal is not None
        assert journal.problem is not None
        assert "was deleted or renamed" in journal.problem


# Retention and stats.


async def test_finished_jobs_older_than_keep_finished_are_pruned(path: Path) -> None:
    async with Backburner(journal=path) as bg:
        done = bg.enqueue(record, 1)
        await done
        delayed = bg.enqueue_in(3600, record, 2)
    async with Backburner(journal=JournalConfig(path, keep_finished=3600)):
        pass
    assert rows(path, "id, state") == [(done.id, "succeeded"), (delayed.id, "queued")]
    async with Backburner(journal=JournalConfig(path, keep_finished=0)):
        pass  # pruned at open: the finished job goes, the unfinished one stays
    assert rows(path, "id, state") == [(delayed.id, "queued")]


async def test_stats_report_the_journal_lag_and_its_rows_by_state(path: Path) -> None:
    async with Backburner(journal=path) as bg:
        await bg.enqueue(record, 1)
        bg.enqueue_in(60, record, 2)
    async with Backburner(journal=path) as bg:
        stats = bg.stats()
        assert stats.journal is not None
        assert stats.journal.lag == 0
        assert stats.journal.rows == {"succeeded": 1, "queued": 1}
        assert stats.journal.owner.startswith(f"{local_host()}:{os.getpid()}:")
        assert stats.as_dict()["journal"]["rows"] == {"succeeded": 1, "queued": 1}
    assert Backburner().stats().journal is None


# Periodic jobs.


async def test_a_periodic_tick_fires_once_even_when_two_executors_share_the_journal(
    path: Path,
) -> None:
    clock = ManualClock()
    spec = Periodic(tick, every=60)
    one = Backburner(journal=path, clock=clock, periodic=[spec])
    two = Backburner(journal=path, clock=clock, periodic=[spec])
    async with one, two:
        clock.advance(60)
        await asyncio.sleep(0)
        await one.join()
        await two.join()
        assert journal_jobs.calls == [("tick", None)]


async def test_a_tick_missed_while_down_fires_once_at_start_and_a_restart_does_not_repeat_one(
    path: Path,
) -> None:
    clock = ManualClock()
    spec = Periodic(tick, every=60)
    async with Backburner(journal=path, clock=clock, periodic=[spec]) as bg:
        clock.advance(60)
        await asyncio.sleep(0)
        await bg.join()
    assert len(journal_jobs.calls) == 1
    async with Backburner(journal=path, clock=clock, periodic=[spec]) as bg:
        await bg.join()  # restarted within the same minute: nothing to catch up
    assert len(journal_jobs.calls) == 1
    clock.advance(300)  # down for five ticks
    async with Backburner(journal=path, clock=clock, periodic=[spec]) as bg:
        await asyncio.sleep(0)
        await bg.join()
    assert len(journal_jobs.calls) == 2  # once, late, for all of them


async def test_a_periodic_job_must_be_registered_to_be_journaled(path: Path) -> None:
    bg = Backburner(journal=path, periodic=[Periodic(not_registered, every=60, args=(1,))])
    with pytest.raises(TypeError, match=r"periodic job 'not_registered'.*@job"):
        await bg.open()


async def test_a_failed_job_retried_by_hand_is_unfinished_again_and_survives_a_restart(
    path: Path,
) -> None:
    journal_jobs.started["retry"] = asyncio.Event()
    async with Backburner(journal=path, workers=1, shutdown_timeout=0.2) as bg:
        failed = bg.options(retries=0).enqueue(fails_first, 3)
        await bg.join()
        assert failed.status is JobStatus.FAILED
        blocker = bg.enqueue(journal_jobs.blocks, "retry")  # holds the only worker
        await journal_jobs.started["retry"].wait()
        bg.retry(failed)  # waits behind it until shutdown
    assert rows(path, "id, state") == [(failed.id, "queued"), (blocker.id, "queued")]
    connection = sqlite3.connect(path)
    with connection:  # the blocker would sleep for a minute: not this test's business
        connection.execute("DELETE FROM jobs WHERE id = ?", (blocker.id,))
    connection.close()
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == [("fails_first", 3), ("fails_first", 3)]
    assert rows(path, "id, state, attempt") == [(failed.id, "succeeded", 2)]


# Who is dead: a process on this host lives as long as its pid (and start time) does; an owner
# on another host (or pid namespace) is judged by its heartbeat and its claims' leases.


def insert_foreign(
    path: Path,
    *,
    heartbeat_age: float,
    lease_left: float,
    owner: str = "otherhost/1:4242:far",
    boot_id: str | None = None,
    boot_beat_age: float | None = None,
    process_start: int | None = None,
) -> str:
    """A job held by ``owner``, last heard of ``heartbeat_age`` seconds ago (wall clock)."""
    now = time.time()
    boot_now = boot_clock()
    boot_beat = None if boot_beat_age is None or boot_now is None else boot_now - boot_beat_age
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO jobs (id, name, queue, payload, state, owner, lease_until, enqueued_at)"
            " VALUES ('far', 'tests.record', 'default', '{\"args\":[9]}', 'queued', ?, ?, 0)",
            (owner, now + lease_left),
        )
        connection.execute(
            "INSERT INTO owners (owner, heartbeat, started_at, boot_id, boot_beat, process_start)"
            " VALUES (?, ?, 0, ?, ?, ?)",
            (owner, now - heartbeat_age, boot_id, boot_beat, process_start),
        )
    connection.close()
    return owner


@pytest.mark.parametrize(
    ("heartbeat_age", "lease_left", "taken"),
    [
        (1.0, -100.0, False),  # alive (a recent heartbeat): never taken, even past its lease
        (100.0, 100.0, False),  # silent, but its claim still holds
        (100.0, -1.0, True),  # silent past the lease, claim lapsed: presumed dead
    ],
)
async def test_another_hosts_job_is_taken_only_once_its_owner_is_silent_and_its_lease_lapsed(
    path: Path, heartbeat_age: float, lease_left: float, taken: bool
) -> None:
    await make_journal(path)
    owner = insert_foreign(path, heartbeat_age=heartbeat_age, lease_left=lease_left)
    async with Backburner(journal=JournalConfig(path, lease=30)) as bg:
        await bg.join()
    assert journal_jobs.calls == ([("record", 9)] if taken else [])
    assert rows(path, f"state, {FREE}") == [("succeeded", 0) if taken else ("queued", 0)]
    if not taken:
        assert rows(path, "owner") == [(owner,)]


needs_linux = pytest.mark.skipif(
    local_boot_id() is None or process_start(os.getpid()) is None,
    reason="needs /proc and CLOCK_BOOTTIME (Linux)",
)


@needs_linux
@pytest.mark.parametrize(
    ("boot_beat_age", "taken"),
    [
        (1.0, False),  # its heartbeat is recent on the clock no step moves: alive
        (100.0, True),  # silent on that clock too, claim lapsed: presumed dead
    ],
)
async def test_an_owner_sharing_this_kernel_is_judged_on_the_boot_clock_not_the_wall_clock(
    path: Path, boot_beat_age: float, taken: bool
) -> None:
    """A container beside this one (its own pid namespace) whose wall clock stepped back."""
    await make_journal(path)
    insert_foreign(
        path,
        owner="container/4026532999:1:beside",
        heartbeat_age=3600.0,  # an hour late on the wall clock
        lease_left=-3600.0,
        boot_id=local_boot_id(),
        boot_beat_age=boot_beat_age,
    )
    async with Backburner(journal=JournalConfig(path, lease=30)) as bg:
        await bg.join()
    assert journal_jobs.calls == ([("record", 9)] if taken else [])


@needs_linux
@pytest.mark.parametrize("same_process", [True, False])
async def test_a_live_pid_on_this_host_is_alive_however_late_its_heartbeat_unless_reused(
    path: Path, same_process: bool
) -> None:
    """Our parent holds a job, its heartbeat and lease an hour stale (a clock step).

    If the row's start time is the parent's, the parent holds it: never taken. If not, the pid
    now belongs to another process than the one that wrote the row: the owner is dead.
    """
    await make_journal(path)
    parent = os.getppid()
    start = process_start(parent)
    assert start is not None
    insert_foreign(
        path,
        owner=f"{local_host()}:{parent}:stepped",
        heartbeat_age=3600.0,
        lease_left=-3600.0,
        boot_id=local_boot_id(),
        boot_beat_age=3600.0,
        process_start=start if same_process else start + 1,
    )
    async with Backburner(journal=JournalConfig(path, lease=30)) as bg:
        await bg.join()
    assert journal_jobs.calls == ([] if same_process else [("record", 9)])


@needs_linux
async def test_a_dead_process_not_yet_reaped_is_dead(path: Path) -> None:
    await make_journal(path)
    child = await asyncio.to_thread(subprocess.Popen, [sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while (state := _process_state(child.pid)) is None or state[0] != "Z":
            assert time.monotonic() < deadline, f"{child.pid} never became a zombie: {state}"
            await asyncio.sleep(0.01)
        insert_foreign(
            path,
            owner=f"{local_host()}:{child.pid}:zombie",
            heartbeat_age=0.0,  # it beat just now: only its process says it is gone
            lease_left=100.0,
            boot_id=local_boot_id(),
            boot_beat_age=0.0,
            process_start=state[1],
        )
        async with Backburner(journal=JournalConfig(path, lease=30)) as bg:
            await bg.join()
    finally:
        await asyncio.to_thread(child.wait)
    assert journal_jobs.calls == [("record", 9)]


async def test_two_executors_of_one_process_never_take_each_others_jobs(path: Path) -> None:
    first = Backburner(journal=path)
    await first.open()  # accepts, runs nothing
    held = [first.enqueue(record, n) for n in range(3)]
    async with Backburner(journal=path) as second:
        await second.join()
        assert second.stats().total.pending == 0
    assert journal_jobs.calls == []
    await first.start()
    await first.join()
    await first.aclose()
    assert journal_jobs.calls == [("record", 0), ("record", 1), ("record", 2)]
    assert rows(path, "id, state") == [(job.id, "succeeded") for job in held]


def _taken_for_dead(record: logging.LogRecord) -> bool:
    return (
        record.levelno >= logging.WARNING
        and "was taken for dead by another process" in record.getMessage()
    )


@pytest.mark.parametrize(
    ("takeover", "said"),
    [
        ("UPDATE owners SET released = 1 WHERE owner = :me", "it was marked released"),
        ("UPDATE owners SET adopted_by = 'otherhost/1:7:heir' WHERE owner = :me", "adopted"),
        (
            "UPDATE jobs SET owner = 'otherhost/1:7:heir'; DELETE FROM owners WHERE owner = :me",
            "its owner row was gone",
        ),
    ],
    ids=["released", "adopted", "forgotten"],
)
async def test_a_process_that_finds_its_jobs_taken_says_so_at_warning(
    path: Path, takeover: str, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What another host's process does to an owner it presumes dead, seen at the next beat."""
    bg = Backburner(journal=JournalConfig(path, lease=1.0, heartbeat=0.05))
    with when_logged(_taken_for_dead) as taken:
        try:
            await bg.open()
            bg.enqueue(record, 1)  # held by this process
            stats = bg.stats().journal
            assert stats is not None
            connection = sqlite3.connect(path)
            with connection:
                for statement in takeover.split(";"):
                    connection.execute(statement, {"me": stats.owner})
            connection.close()
            assert await asyncio.to_thread(taken.seen.wait, 30)
        finally:
            await bg.aclose()
    messages = [r.getMessage() for r in caplog.records if _taken_for_dead(r)]
    assert said in messages[0]
    assert "Jobs it held may run twice" in messages[0]


# The middleware.


async def test_the_middleware_takes_journal_settings_and_fails_startup_on_a_bad_file(
    path: Path,
) -> None:
    await asyncio.to_thread(path.write_bytes, b"not a journal" * 10)
    app = Starlette()
    app.add_middleware(BackburnerMiddleware, journal=path, durability="power")
    messages: list[Message] = []
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await app(scope, inbox.get, send)
    assert [m["type"] for m in messages] == ["lifespan.startup.failed"]
    assert messages[0]["message"].startswith("backburner could not start: the journal ")
    assert "is not an SQLite database" in messages[0]["message"]


async def test_jobs_pass_from_restart_to_restart_until_one_runs_them_each_once(path: Path) -> None:
    first = Backburner(journal=path)
    await first.open()
    for n in range(5):
        first.enqueue(record, n)
    await first.aclose()
    second = Backburner(journal=path)
    await second.open()  # takes them all (adopts the first's), runs none
    assert second.stats().total.pending == 5
    await second.aclose()  # and gives them back
    async with Backburner(journal=path) as third:
        await third.join()
    assert sorted(v for _, v in journal_jobs.calls) == [0, 1, 2, 3, 4]
    assert rows(path, "state") == [("succeeded",)] * 5


async def test_jobs_adopted_by_a_process_that_died_are_freed_with_its_own(path: Path) -> None:
    await make_journal(path)
    orphan = insert_orphan(path, name="tests.record", state="queued")
    dead = f"{local_host()}:999999998:adopter"
    connection = sqlite3.connect(path)
    with connection:  # the orphan's owner was released, then adopted by a process now gone
        connection.execute(
            "UPDATE owners SET released = 0, adopted_by = ? WHERE owner LIKE '%:dead'", (dead,)
        )
        connection.execute(
            "INSERT INTO owners (owner, heartbeat, started_at) VALUES (?, 9e12, 0)", (dead,)
        )
    connection.close()
    async with Backburner(journal=path) as bg:
        await bg.join()
    assert journal_jobs.calls == [("record", 7)]
    assert rows(path, "id, state") == [(orphan, "succeeded")]


async def test_a_job_the_journal_cannot_write_is_refused_at_enqueue_not_dropped_later(
    path: Path,
) -> None:
    async with Backburner(journal=path) as bg:
        await bg.enqueue(record, "written")
        connection = sqlite3.connect(path)
        connection.execute("ALTER TABLE jobs RENAME TO lost")  # the writer's next insert fails
        connection.close()
        with pytest.raises(JournalError, match="could not be written"):
            bg.enqueue(record, "refused")
        with pytest.raises(JournalError, match="could not be written"):
            await bg.aenqueue(record, "refused too")
        await bg.join()
    assert journal_jobs.calls == [("record", "written")]


async def test_a_job_refused_because_its_queue_is_full_leaves_no_row(path: Path) -> None:
    bg = Backburner(journal=path, workers=1, max_pending=1)
    await bg.open()
    kept = [bg.enqueue(record, 1), bg.enqueue(record, 2)]  # one for the slot, one waiting
    with pytest.raises(QueueFull):
        bg.enqueue(record, 3)
    await bg.aclose()
    assert rows(path, "id") == [(job.id,) for job in kept]


async def test_shutdown_keeps_its_deadline_while_another_process_holds_the_journal(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bg = Backburner(journal=path, shutdown_timeout=1.0)
    await bg.open()
    bg.enqueue(record, 1)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process, holding the write lock
    try:
        began = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="backburner"):
            await bg.aclose()
        assert time.monotonic() - began < 4  # the 1 s budget, a second for the release, slack
        assert "could not release this process's jobs within" in caplog.text
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with Backburner(journal=path) as again:  # the job was not lost for all that
        await again.join()
    assert journal_jobs.calls == [("record", 1)]


async def test_a_manual_retry_refused_for_its_unique_key_leaves_the_job_failed_on_disk(
    path: Path,
) -> None:
    journal_jobs.key_free["k"] = asyncio.Event()
    async with Backburner(journal=path) as bg:
        failed = bg.enqueue(journal_jobs.fails_keyed, "k")
        with pytest.raises(journal_jobs.Flaky):
            await failed
        holder = bg.enqueue(journal_jobs.holds_key, "k")
        with pytest.raises(DuplicateJob):
            bg.retry(failed)
        assert bg.failures() == [failed]
        journal_jobs.key_free["k"].set()
        await holder
    connection = sqlite3.connect(path)
    try:
        (state,) = connection.execute(
            "SELECT state FROM jobs WHERE name = 'tests.fails_keyed'"
        ).fetchone()
    finally:
        connection.close()
    assert state == "failed"
    journal_jobs.calls.clear()
    async with Backburner(journal=path) as bg:  # a restart does not run it again
        await bg.join()
    assert ("fails_keyed", "k") not in journal_jobs.calls
