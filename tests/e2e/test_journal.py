"""Durable jobs in real uvicorn processes: SIGKILL loses nothing; processes share one journal.

Every job appends ``<number> <pid> <time>`` to a results file when it completes
(``apps/journaled.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from backburner import JournalConfig
from backburner._journal._writer import ClaimedRow, Journal

from ..journal_jobs import NoRecovery
from ._uvicorn import Serve, Uvicorn

pytestmark = pytest.mark.e2e

STARTUP_FAILURE = 3
JOBS = 10_000
KILLS = 20
WORKERS = 4
BATCH = 500


def completed(results: Path) -> list[int]:
    """The numbers of every completed run, duplicates included (whole lines only)."""
    try:
        text = results.read_text()
    except FileNotFoundError:
        return []
    return [int(line.split()[0]) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def integrity(journal: Path) -> str:
    connection = sqlite3.connect(journal)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def journal_settings(tmp_path: Path, **more: float | str) -> dict[str, float | str]:
    return {
        "journal": str(tmp_path / "jobs.sqlite3"),
        "results": str(tmp_path / "results.txt"),
        **more,
    }


def test_sigkill_20_times_loses_no_job(serve: Serve, tmp_path: Path) -> None:
    """10,000 journaled jobs, SIGKILL at random moments 20 times: all run, few run twice.

    The kill times come from a seeded RNG; a failure names the seed (rerun with
    ``BB_CRASH_SEED=<seed>``).
    """
    seed = int(os.environ.get("BB_CRASH_SEED", random.randrange(2**32)))
    try:
        _kill_and_restart(serve, tmp_path, random.Random(seed))
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from None


def _kill_and_restart(serve: Serve, tmp_path: Path, rng: random.Random) -> None:
    settings = journal_settings(tmp_path, workers=WORKERS, job_ms=4, max_attempts=KILLS + 1)
    journal, results = Path(str(settings["journal"])), Path(str(settings["results"]))
    acknowledged: set[int] = set()
    next_batch = 0
    for kill in range(KILLS):
        server = serve("journaled", settings=settings)
        server.wait_ready()
        kill_at = time.monotonic() + rng.uniform(0.05, 0.8)
        with server.client() as client:
            while time.monotonic() < kill_at:
                if next_batch * BATCH < JOBS:
                    try:
                        answer = client.post(
                            "/enqueue", params={"start": next_batch * BATCH, "count": BATCH}
                        )
                    except httpx.TransportError:
                        break
                    assert answer.status_code == 200, answer.text
                    acknowledged.update(range(next_batch * BATCH, (next_batch + 1) * BATCH))
                    next_batch += 1
                else:
                    time.sleep(0.01)
        server.send(signal.SIGKILL)
        server.wait_exit(within=10)
        check = integrity(journal)
        assert check == "ok", f"integrity_check after kill {kill + 1}: {check}"
        assert "database is locked" not in server.output(), server.tail()
    final = serve("journaled", settings=settings)
    final.wait_ready()
    with final.client() as client:
        while next_batch * BATCH < JOBS:
            answer = client.post("/enqueue", params={"start": next_batch * BATCH, "count": BATCH})
            assert answer.status_code == 200, answer.text
            acknowledged.update(range(next_batch * BATCH, (next_batch + 1) * BATCH))
            next_batch += 1
    final.wait_until(
        "every acknowledged job completed",
        lambda: acknowledged <= set(completed(results)),
        timeout=60,
    )
    final.send(signal.SIGTERM)
    assert final.wait_exit(within=15)[0] == -signal.SIGTERM
    final.assert_no_errors()
    assert integrity(journal) == "ok"
    runs = Counter(completed(results))
    lost = acknowledged - set(runs)
    duplicates = sum(count - 1 for count in runs.values())
    assert not lost, f"{len(lost)} jobs lost, e.g. {sorted(lost)[:10]}"
    assert duplicates <= WORKERS * KILLS, f"{duplicates} duplicate runs"
    connection = sqlite3.connect(journal)
    states = dict(connection.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    connection.close()
    assert states == {"succeeded": JOBS}, str(states)


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_sharing_a_journal_never_run_a_job_twice_while_its_owner_lives(
    serve: Serve, tmp_path: Path, processes: int
) -> None:
    """Jobs one process released at shutdown are claimed by the others, each exactly once."""
    settings = journal_settings(tmp_path, job_ms=5, shutdown_timeout=0.5)
    servers = [serve("journaled", settings=settings) for _ in range(processes)]
    for server in servers:
        server.wait_ready()
    # The first process gets more than it can finish before its shutdown's deadline.
    counts = [3000] + [500] * (processes - 1)
    starts = [sum(counts[:index]) for index in range(processes)]
    answers = []
    for index in reversed(range(processes)):
        with servers[index].client() as client:
            path = "/enqueue-sync" if index % 2 else "/enqueue"
            params = {"start": starts[index], "count": counts[index]}
            answers.append(client.post(path, params=params).status_code)
    assert answers == [200] * processes
    first = servers[0]
    first.send(signal.SIGTERM)  # its unfinished jobs are released for the others to claim
    assert first.wait_exit(within=10)[0] == -signal.SIGTERM
    results = Path(str(settings["results"]))
    expected = set(range(sum(counts)))
    servers[1].wait_until(
        "every job completed", lambda: expected <= set(completed(results)), timeout=60
    )
    for server in servers[1:]:
        server.send(signal.SIGTERM)
        assert server.wait_exit(within=10)[0] == -signal.SIGTERM
    for server in servers:
        server.assert_no_errors()
        assert "locked" not in server.output()
    runs = Counter(completed(results))
    assert [n for n, c in runs.items() if c > 1] == []
    assert set(runs) == expected
    assert "kept in the journal" in first.output()


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_job_that_kills_its_process_is_dead_after_max_attempts_starts_and_never_runs_again(
    serve: Serve, tmp_path: Path, kind: str
) -> None:
    """Its start is on disk before its code runs: each SIGKILL it causes counts a crash."""
    settings = journal_settings(tmp_path, max_attempts=3)
    first = serve("journaled", settings=settings)
    first.wait_ready()
    with first.client() as client, contextlib.suppress(httpx.TransportError):
        client.post("/enqueue-killer", params={"kind": kind})  # it may die before it answers
    server = first
    for start in range(3):
        code, _ = server.wait_exit(within=15)
        assert code == -signal.SIGKILL, server.tail()
        assert [e["event"] for e in server.events()].count("killer") == 1, server.tail()
        if start < 2:  # the next start takes the job back, runs it, and is killed by it
            server = serve("journaled", settings=settings)
    fourth = serve("journaled", settings=settings)
    fourth.wait_ready()
    message = "is dead: its process died during each of its last 3 attempts"
    errors = [e for e in fourth.events() if e["event"] == "log" and e["level"] == "ERROR"]
    assert [message in e["message"] for e in errors] == [True], errors
    connection = sqlite3.connect(Path(str(settings["journal"])))
    state = connection.execute("SELECT name, state, crashes, attempt FROM jobs").fetchall()
    connection.close()
    name = "e2e.kills_its_process" + ("_sync" if kind == "sync" else "")
    assert state == [(name, "dead", 3, 3)]
    fourth.send(signal.SIGTERM)
    assert fourth.wait_exit(within=10)[0] == -signal.SIGTERM
    fifth = serve("journaled", settings=settings)  # and the next start leaves it dead
    fifth.wait_ready()
    fifth.send(signal.SIGTERM)
    assert fifth.wait_exit(within=10)[0] == -signal.SIGTERM
    for server in (fourth, fifth):
        assert "killer" not in [e["event"] for e in server.events()]
    fifth.assert_no_errors()


def test_a_killed_owners_jobs_are_taken_over_within_lease_and_heartbeat(
    serve: Serve, tmp_path: Path
) -> None:
    lease, heartbeat = 2.0, 0.5
    settings = journal_settings(tmp_path, job_ms=5, lease=lease, heartbeat=heartbeat, workers=1)
    victim, heir, spare = (serve("journaled", settings=settings) for _ in range(3))
    for server in (victim, heir, spare):
        server.wait_ready()
    with victim.client() as client:
        assert client.post("/enqueue", params={"start": 0, "count": 2000}).status_code == 200
    results = Path(str(settings["results"]))
    killed_at = time.time()
    victim.send(signal.SIGKILL)
    victim.wait_exit(within=10)
    heir.wait_until(
        "every job completed", lambda: set(range(2000)) <= set(completed(results)), timeout=60
    )
    lines = [line.split() for line in results.read_text().splitlines()]
    taken_over = [float(t) for _, pid, t in lines if int(pid) != victim.process.pid]
    assert taken_over, "no job ran in another process"
    assert min(taken_over) - killed_at <= lease + heartbeat + 0.5  # + a job's own time
    for server in (heir, spare):
        server.send(signal.SIGTERM)
        assert server.wait_exit(within=10)[0] == -signal.SIGTERM
        assert "locked" not in server.output()
    runs = Counter(completed(results))
    assert set(runs) == set(range(2000))
    # What ran twice is what the victim ran after its writer's last commit: its running job
    # and the jobs whose end was still to be committed (a few ms of them; more under load).
    # Ends are committed in order, so they are exactly the last of the victim's runs: how
    # many depends on the machine's load, which ones does not.
    assert max(runs.values()) <= 2
    twice = {job for job, count in runs.items() if count == 2}
    by_victim = [int(job) for job, pid, _ in lines if int(pid) == victim.process.pid]
    assert twice == set(by_victim[len(by_victim) - len(twice) :]), (len(twice), len(by_victim))


class _Room(NoRecovery):
    """A recoverer with room for anything, that keeps what it is handed (nothing, we hope)."""

    def __init__(self) -> None:
        self.delivered: list[ClaimedRow] = []

    def room(self) -> tuple[dict[str, int], int]:
        return {"default": 100_000}, 100_000

    def clock_now(self) -> float:
        return time.time()

    def deliver(self, rows: Sequence[ClaimedRow]) -> tuple[list[tuple[str, str]], list[str]]:
        self.delivered += rows
        return [], []


def test_a_clock_step_in_another_process_takes_no_job_of_a_live_owner(
    serve: Serve, tmp_path: Path
) -> None:
    """A process whose wall clock jumped an hour ahead sees every heartbeat and lease of a live
    uvicorn process an hour stale. The owner's pid is alive on this host: nothing is taken.
    """
    settings = journal_settings(
        tmp_path, job_ms=60_000, workers=1, lease=2, heartbeat=0.5, shutdown_timeout=0.5
    )
    owner = serve("journaled", settings=settings)
    owner.wait_ready()
    with owner.client() as client:
        assert client.post("/enqueue", params={"start": 0, "count": 20}).status_code == 200
    journal_path = Path(str(settings["journal"]))
    room = _Room()

    async def look_with_a_stepped_clock() -> None:
        config = JournalConfig(journal_path, lease=2, heartbeat=0.5)
        stepped = Journal(config, room, wall_clock=lambda: time.time() + 3600)
        await stepped.open()  # finds dead owners and claims their jobs, as every heartbeat
        await stepped.close(timeout=10)

    asyncio.run(look_with_a_stepped_clock())
    assert room.delivered == []
    connection = sqlite3.connect(journal_path)
    owners = connection.execute("SELECT released, adopted_by FROM owners").fetchall()
    holders = connection.execute("SELECT DISTINCT owner FROM jobs").fetchall()
    connection.close()
    assert owners == [(0, None)]
    assert len(holders) == 1
    assert f":{owner.process.pid}:" in holders[0][0]
    owner.send(signal.SIGTERM)
    assert owner.wait_exit(within=10)[0] == -signal.SIGTERM
    assert "taken for dead" not in owner.output()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("zero-length", b"", "is empty (0 bytes)"),
        ("garbage", b"\x00\xffnot a database at all" * 100, "is not an SQLite database"),
        ("truncated", None, "truncated"),
        ("newer-schema", None, "written by a newer backburner"),
    ],
)
def test_a_bad_journal_fails_startup_with_exit_3_and_says_what_to_do(
    serve: Serve, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    settings = journal_settings(tmp_path)
    journal = Path(str(settings["journal"]))
    if content is not None:
        journal.write_bytes(content)
    else:
        _make_journal(serve, settings)
        if name == "truncated":
            data = journal.read_bytes()
            journal.write_bytes(data[: len(data) // 2])
        else:
            connection = sqlite3.connect(journal)
            connection.execute("PRAGMA user_version = 99")
            connection.close()
    server = serve("journaled", settings=settings)
    code, _ = server.wait_exit(within=15)
    assert code == STARTUP_FAILURE, server.tail()
    stderr = server.output()
    assert message in stderr
    assert "backburner could not start" in stderr
    assert "Application startup failed" in stderr
    assert not Path(str(settings["results"])).exists() or not completed(
        Path(str(settings["results"]))
    )


def _make_journal(serve: Serve, settings: dict[str, float | str]) -> Uvicorn:
    """A real journal with some finished and some released jobs in it."""
    server = serve("journaled", settings={**settings, "job_ms": 1000, "shutdown_timeout": 0.2})
    server.wait_ready()
    with server.client() as client:
        assert client.post("/enqueue", params={"start": 0, "count": 3000}).status_code == 200
    server.send(signal.SIGTERM)
    assert server.wait_exit(within=10)[0] == -signal.SIGTERM
    return server


def test_uvicorn_workers_share_one_journal_and_run_each_job_once(
    serve: Serve, tmp_path: Path
) -> None:
    """``uvicorn --workers 2``: both processes accept jobs; a restart finishes what was left."""
    settings = journal_settings(tmp_path, job_ms=20, shutdown_timeout=0.5)
    server = serve("journaled", settings=settings, args=["--workers", "2"])
    server.wait_ready(timeout=30)
    pids = set()
    for batch in range(20):
        with server.client() as client:  # a connection each: either worker may accept it
            answer = client.post("/enqueue", params={"start": batch * 100, "count": 100})
        assert answer.status_code == 200, answer.text
        pids.add(answer.json()["pid"])
    server.send(signal.SIGTERM)
    server.wait_exit(within=20)
    assert "locked" not in server.output()
    results = Path(str(settings["results"]))
    finisher = serve("journaled", settings={**settings, "job_ms": 1})
    finisher.wait_ready()
    expected = set(range(2000))
    finisher.wait_until(
        "every job completed", lambda: expected <= set(completed(results)), timeout=60
    )
    finisher.send(signal.SIGTERM)
    finisher.wait_exit(within=10)
    for process in (server, finisher):
        process.assert_no_errors()
        assert "locked" not in process.output()
    runs = Counter(completed(results))
    assert set(runs) == expected
    assert [n for n, c in runs.items() if c > 1] == []
    finished_later = [
        line
        for line in results.read_text().splitlines()
        if line.split()[1] == str(finisher.process.pid)
    ]
    assert finished_later, "the workers' shutdown left nothing for the next start: no test"
    assert pids  # (the kernel spreads connections as it likes: usually both workers took some)


def test_held_jobs_of_a_killed_process_are_taken_over_and_still_held_by_their_limit(
    serve: Serve, tmp_path: Path
) -> None:
    """A job a limit holds is a queued row like any waiting job: SIGKILL loses none of them,
    and the process that takes them over keeps the limit (one at a time)."""
    settings = journal_settings(tmp_path, job_ms=20, lease=2.0, heartbeat=0.5, workers=4)
    victim, heir = (serve("journaled", settings=settings) for _ in range(2))
    for server in (victim, heir):
        server.wait_ready()
    with victim.client() as client:
        answer = client.post("/enqueue-limited", params={"start": 0, "count": 20}).json()
    assert answer["statuses"] == ["running"] + ["blocked"] * 19
    victim.send(signal.SIGKILL)
    victim.wait_exit(within=10)
    results = Path(str(settings["results"]))
    heir.wait_until(
        "every held job completed", lambda: set(range(20)) <= set(completed(results)), timeout=60
    )
    heir.send(signal.SIGTERM)
    assert heir.wait_exit(within=10)[0] == -signal.SIGTERM
    runs = [line.split() for line in results.read_text().splitlines()]
    by_heir = sorted(
        (float(began), float(ended))
        for _, pid, began, ended in runs
        if int(pid) != victim.process.pid
    )
    assert by_heir, "the heir ran none of them"
    for (_, ended), (began, _) in itertools.pairwise(by_heir):
        assert began >= ended, "two jobs of a ConcurrencyLimit(1) ran at once in the heir"
