"""Limits with ``scope="host"``: counted across the app's processes on this host.

Two executors of this process with one coordination directory stand for two processes where
that is faithful (each has its own name in ``procs/`` and its own gate, as a process does);
the real thing runs in siblings (``tests/host_limits_child.py``): one at a time across two
processes, a rate window across two processes, and a SIGKILLed holder's token freed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backburner import (
    Backburner,
    ConcurrencyLimit,
    JobCancelled,
    JobStatus,
    JobTimeout,
    RateLimit,
    job,
)
from backburner.testing import ManualClock
from tests.jobs import Gate

from .processes import ChildProcess

pytestmark = pytest.mark.anyio

ONE = ConcurrencyLimit(1, name="tests.host-one", scope="host")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _echo(n: int) -> int:
    return n


@job(name="tests.host_limits.echo", limits=[ONE])
async def echo(n: int) -> int:
    return n


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Backburner, Backburner]]:
    """Two executors sharing one coordination directory: two processes of one app."""
    first = Backburner(coordination=tmp_path / "box", workers=2)
    second = Backburner(coordination=tmp_path / "box", workers=1)
    async with first, second:
        yield first, second


async def test_a_host_concurrency_limit_holds_the_other_process_until_the_token_returns(
    pair: tuple[Backburner, Backburner],
) -> None:
    first, second = pair
    gate = Gate()
    running = first.options(limits=[ONE]).enqueue(gate.hold)
    await gate.started.wait()
    held = second.options(limits=[ONE]).enqueue(_echo, 1)
    assert held.status is JobStatus.BLOCKED
    assert second.queues()["default"].held_jobs() == [held]
    # It holds no worker: the other process's only worker runs a plain job meanwhile.
    assert await second.enqueue(_echo, 2) == 2
    assert held.status is JobStatus.BLOCKED
    gate.opened.set()
    await running
    assert await asyncio.wait_for(held, 30) == 1  # woken by the poller, not by a call


@pytest.mark.parametrize("end", ["fails", "is cancelled", "times out", "is shut down"])
async def test_every_end_gives_the_host_token_back(tmp_path: Path, end: str) -> None:
    gate = Gate()

    @job(timeout=0.05 if end == "times out" else None, limits=[ONE])
    async def holder() -> None:
        await gate.hold()
        raise RuntimeError("boom")

    first = Backburner(coordination=tmp_path / "box", shutdown_timeout=0.1)
    async with Backburner(coordination=tmp_path / "box") as second:
        await first.start()
        try:
            running = first.enqueue(holder)
            await gate.started.wait()
            held = second.options(limits=[ONE]).enqueue(_echo, 1)
            assert held.status is JobStatus.BLOCKED
            if end == "fails":
                gate.opened.set()
            elif end == "is cancelled":
                running.cancel()
            elif end == "is shut down":
                await first.aclose()
            assert await asyncio.wait_for(held, 30) == 1
            expected = {"fails": RuntimeError, "times out": JobTimeout}.get(end, JobCancelled)
            with pytest.raises(expected):
                await running
        finally:
            await first.aclose()


async def test_a_host_rate_limit_counts_the_starts_of_every_process(tmp_path: Path) -> None:
    clock = ManualClock()
    limit = RateLimit(1, per=10, name="tests.host-rate", scope="host")
    async with (
        Backburner(coordination=tmp_path / "box", clock=clock) as first,
        Backburner(coordination=tmp_path / "box", clock=clock) as second,
    ):
        assert await first.options(limits=[limit]).enqueue(_echo, 1) == 1
        held = second.options(limits=[limit]).enqueue(_echo, 2)
        assert held.status is JobStatus.THROTTLED
        assert held.held_by == "tests.host-rate"
        clock.advance(10)
        assert await asyncio.wait_for(held, 30) == 2


async def test_a_host_rate_limited_job_cancelled_before_it_started_uses_none_of_the_window(
    tmp_path: Path,
) -> None:
    # Its reservation in the shared file (a start to come) goes with it: no start will ever
    # stamp it, and the window would count it for good.
    clock = ManualClock()
    gate = Gate()
    limit = RateLimit(1, per=3600, name="tests.host-hour", scope="host")
    async with (
        Backburner(coordination=tmp_path / "box", clock=clock, workers=1) as first,
        Backburner(coordination=tmp_path / "box", clock=clock) as second,
    ):
        first.enqueue(gate.hold)  # the only worker is busy
        await gate.started.wait()
        waiting = first.options(limits=[limit]).enqueue(_echo, 1)  # let go: waits for a worker
        assert waiting.status is JobStatus.PENDING
        assert waiting.cancel()
        await settle()
        other = second.options(limits=[limit]).enqueue(_echo, 2)
        assert await asyncio.wait_for(other, 30) == 2  # the hour's one start was free
        gate.opened.set()


async def test_scope_host_with_a_journal_counts_in_the_coordination_directory(
    tmp_path: Path,
) -> None:
    async with (
        Backburner(coordination=tmp_path / "box") as first,
        Backburner(journal=tmp_path / "b.sqlite3", coordination=tmp_path / "box") as second,
    ):
        gate = Gate()
        running = first.options(limits=[ONE]).enqueue(gate.hold)
        await gate.started.wait()
        held = second.enqueue(echo, 1)
        assert held.status is JobStatus.BLOCKED
        gate.opened.set()
        await running
        assert await asyncio.wait_for(held, 30) == 1


async def test_scope_host_without_a_coordination_directory_raises_at_the_call_site() -> None:
    async with Backburner(coordination=False) as bg:
        with pytest.raises(ValueError, match=r"scope='host'.*coordination="):
            bg.options(limits=[RateLimit(1, per=1, scope="host")]).enqueue(_echo, 1)
        assert bg.stats().total.pending == 0


async def test_two_different_host_limits_of_one_name_are_refused(tmp_path: Path) -> None:
    """The processes find a host limit by its name: two would silently be one budget."""
    async with Backburner(coordination=tmp_path / "box") as bg:
        assert await bg.options(limits=[ConcurrencyLimit(1, scope="host")]).enqueue(_echo, 1)
        with pytest.raises(ValueError, match="two different host-scoped limits"):
            bg.options(limits=[ConcurrencyLimit(1, scope="host")]).enqueue(_echo, 2)


# Real processes.


class Sibling(ChildProcess):
    """Another process of the app: ``tests/host_limits_child.py``."""

    def __init__(self, directory: Path, output: Path, log: Path, mode: str, count: int) -> None:
        script = [sys.executable, "-m", "tests.host_limits_child"]
        super().__init__([*script, str(directory), str(log), mode, str(count)], output)


@pytest.fixture
def siblings() -> Iterator[list[Sibling]]:
    started: list[Sibling] = []
    yield started
    for sibling in started:
        sibling.kill()


def run_siblings(
    siblings: list[Sibling], tmp_path: Path, mode: str, count: int
) -> list[tuple[str, int, float]]:
    """Two siblings enqueue ``count`` jobs each at once; their log's lines, in order."""
    box, log = tmp_path / "box", tmp_path / "jobs.log"
    for n in range(2):
        siblings.append(Sibling(box, tmp_path / f"sibling-{n}.out", log, mode, count))
    for sibling in siblings:
        sibling.wait_for_output("ready", timeout=60)
    for sibling in siblings:
        sibling.send(signal.SIGUSR1)
    for sibling in siblings:
        sibling.wait_for_output("done", timeout=90)
    lines = [line.split() for line in log.read_text().splitlines()]
    return [(what, int(pid), float(when)) for what, pid, when in lines]


def test_one_at_a_time_across_two_processes(siblings: list[Sibling], tmp_path: Path) -> None:
    lines = run_siblings(siblings, tmp_path, "concurrency", 15)
    assert len(lines) == 60
    assert {pid for _, pid, _ in lines} == {s.process.pid for s in siblings}
    running = 0
    for what, _, _ in lines:  # a start is written holding the token, an end before it returns
        running += 1 if what == "start" else -1
        assert running in (0, 1), lines


def test_a_rate_window_holds_across_two_processes(siblings: list[Sibling], tmp_path: Path) -> None:
    """``RateLimit(2, per=2)``: any three starts span 2 s. A job notes its start a few
    microseconds after its window counts it: 0.5 s of margin is for a slow machine only."""
    lines = run_siblings(siblings, tmp_path, "rate", 3)
    starts = sorted(when for what, _, when in lines if what == "start")
    assert len(starts) == 6
    spans = [later - earlier for earlier, later in zip(starts, starts[2:], strict=False)]
    assert min(spans) > 1.5, starts


async def test_a_sigkilled_holder_frees_its_token(siblings: list[Sibling], tmp_path: Path) -> None:
    box = tmp_path / "box"
    holder = Sibling(box, tmp_path / "holder.out", tmp_path / "jobs.log", "hold", 1)
    siblings.append(holder)
    holder.wait_for_output("holding", timeout=60)
    async with Backburner(coordination=box) as bg:
        from tests.host_limits_child import ONE as SHARED

        held = bg.options(limits=[SHARED]).enqueue(_echo, 1)
        assert held.status is JobStatus.BLOCKED  # the sibling holds the host's one token
        holder.send(signal.SIGKILL)
        assert await asyncio.wait_for(held, 30) == 1
