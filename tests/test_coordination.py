"""The coordination directory: one tick, one process; siblings counted; failover on a kill.

Siblings are real processes (``tests/processes.py``) running ``tests/coordination_child.py``:
they claim ticks and hold locks the way an executor's process does, and are SIGKILLed.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backburner import Backburner, Periodic, job
from backburner._coordination import Coordination, coordination_for, default_directory
from backburner.testing import ManualClock

from .processes import ChildProcess

pytestmark = pytest.mark.anyio


class Sibling(ChildProcess):
    """Another process of the app: ``tests/coordination_child.py`` on ``directory``."""

    def __init__(self, directory: Path, output: Path, *commands: str) -> None:
        script = [sys.executable, "-m", "tests.coordination_child", str(directory), *commands]
        super().__init__(script, output)

    def said(self, text: str) -> None:
        self.wait_for_output(text, timeout=30)


@pytest.fixture
def siblings(tmp_path: Path) -> Iterator[list[Sibling]]:
    started: list[Sibling] = []
    yield started
    for sibling in started:
        sibling.kill()


def start(siblings: list[Sibling], directory: Path, tmp_path: Path, *commands: str) -> Sibling:
    sibling = Sibling(directory, tmp_path / f"sibling-{len(siblings)}.log", *commands)
    siblings.append(sibling)
    return sibling


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Coordination]:
    coordination = Coordination(tmp_path / "box")
    coordination.open()
    yield coordination
    coordination.close()


def test_a_tick_a_sibling_fired_is_not_fired_again_and_says_who(
    here: Coordination, tmp_path: Path, siblings: list[Sibling]
) -> None:
    """The first process to claim a tick fires it; the others learn its pid; the next is free."""
    sibling = start(siblings, here.directory, tmp_path, "claim:job:10", "wait")
    sibling.said("claim job 10.0: True")
    assert here.claim_tick("job", 10.0) == (False, sibling.process.pid)
    assert here.claim_tick("job", 11.0) == (True, os.getpid())
    assert here.claim_tick("other job", 10.0) == (True, os.getpid())  # a tick file per job


def test_a_sibling_killed_while_claiming_loses_at_most_that_tick(
    here: Coordination, tmp_path: Path, siblings: list[Sibling]
) -> None:
    """A process SIGKILLed holding a tick's lock: its tick is lost, and the next one fires here."""
    sibling = start(siblings, here.directory, tmp_path, "hold:job")
    sibling.said("holding job")
    assert here.claim_tick("job", 20.0) == (False, None)  # it is firing it (never waits)
    sibling.send(signal.SIGKILL)
    sibling.wait_exit(within=10)
    assert here.claim_tick("job", 21.0) == (True, os.getpid())  # the kernel dropped its lock


def test_siblings_are_counted_while_they_live_and_forgotten_once_killed(
    here: Coordination, tmp_path: Path, siblings: list[Sibling]
) -> None:
    """Each live process holds its file's lock; a killed one's file is found and removed."""
    first = start(siblings, here.directory, tmp_path, "wait")
    second = start(siblings, here.directory, tmp_path, "wait")
    first.said("waiting")
    second.said("waiting")
    pids = sorted([os.getpid(), first.process.pid, second.process.pid])
    assert here.processes() == pids
    first.send(signal.SIGKILL)
    first.wait_exit(within=10)
    assert here.processes() == sorted([os.getpid(), second.process.pid])
    assert len(os.listdir(here.directory / "procs")) == 2  # the dead one's file is gone


def test_a_starting_process_removes_the_files_of_dead_ones(tmp_path: Path) -> None:
    """With a journal nobody counts siblings: the files of killed workers (an OOM killer's
    restarts, say) would pile up, one a kill, if starting processes did not sweep them."""
    procs = tmp_path / "box" / "procs"
    first = Coordination(tmp_path / "box")
    first.open(in_memory=False)
    first.close()
    for pid in range(100, 150):  # left by processes that were killed: no lock held
        (procs / f"{pid}.deadbeef").touch()
    coordination = Coordination(tmp_path / "box")
    coordination.open(in_memory=False)
    try:
        assert [name.partition(".")[0] for name in os.listdir(procs)] == [str(os.getpid())]
    finally:
        coordination.close()


def test_another_executor_of_this_process_is_not_a_sibling(tmp_path: Path) -> None:
    """Two executors one after the other in one process (a test suite, a restart) both fire."""
    first, second = Coordination(tmp_path / "box"), Coordination(tmp_path / "box")
    first.open()
    second.open()
    try:
        assert first.claim_tick("job", 5.0).won
        assert not first.claim_tick("job", 5.0).won  # its own tick: once
        assert second.claim_tick("job", 5.0).won
        assert first.processes() == [os.getpid()]
    finally:
        first.close()
        second.close()


def test_the_directory_is_made_private(tmp_path: Path) -> None:
    coordination = Coordination(tmp_path / "box")
    coordination.open()
    coordination.close()
    for folder in (tmp_path / "box", tmp_path / "box" / "procs", tmp_path / "box" / "ticks"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir(mode=0o700)
    (tmp_path / "box").chmod(0o777)
    with pytest.raises(PermissionError, match="writable by no one else"):
        Coordination(tmp_path / "box").open()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory away needs root")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir(mode=0o700)
    os.chown(tmp_path / "box", 65534, 65534)
    with pytest.raises(PermissionError, match="belongs to uid 65534"):
        Coordination(tmp_path / "box").open()


def test_the_default_directory_is_the_users_under_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    directory = default_directory()
    assert directory.parent == tmp_path / f"backburner-{os.getuid()}"
    coordination = coordination_for(True)
    assert coordination is not None
    coordination.open()
    coordination.close()
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    assert coordination_for(False) is None


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="coordination must be a directory path, True"):
        Backburner(coordination=3)  # type: ignore[arg-type]


@job(unique=lambda key: key)
async def unique_job(key: str) -> None:
    """Registered with a unique key: what in-memory processes do not share."""


async def test_several_in_memory_processes_with_unique_keys_are_warned_once(
    tmp_path: Path, siblings: list[Sibling], caplog: pytest.LogCaptureFixture
) -> None:
    """One WARNING for the app, naming how many processes and pointing to journal=."""
    directory = tmp_path / "box"
    first = start(siblings, directory, tmp_path, "wait")
    first.said("waiting")
    caplog.set_level(logging.WARNING, "backburner")
    async with Backburner(coordination=directory, clock=ManualClock()) as bg:
        assert bg._parts.box is not None
        bg._parts.box.warn_if_several_in_memory()
        bg._parts.box.warn_if_several_in_memory()  # (the second check has nothing new to say)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    message = warnings[0].getMessage()
    assert "2 processes of this app run side by side" in message
    assert "unique keys" in message
    assert "journal=" in message


async def test_periodic_ticks_in_memory_go_through_the_directory(tmp_path: Path) -> None:
    """An in-memory executor's tick asks the directory; one a sibling fired is not fired."""
    clock = ManualClock()
    directory = tmp_path / "box"
    sibling = Coordination(directory)
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    async with Backburner(
        coordination=directory, clock=clock, periodic=[Periodic(tick, every=10, name="tick")]
    ) as bg:
        sibling.pid = 1  # plays another process: its records are a sibling's
        sibling.open()
        assert sibling.claim_tick("tick", clock.now() + 10 - clock.now() % 10).won
        clock.advance(10)
        await bg.join()
        assert runs == []  # the sibling fired that tick
        assert bg.stats().periodic[0].fired_by == 1
        clock.advance(10)
        await bg.join()
        assert runs == [1]
        assert bg.stats().periodic[0].fired_by == os.getpid()
        sibling.close()


async def test_an_unsafe_directory_given_by_name_fails_the_start(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir(mode=0o700)
    (tmp_path / "box").chmod(0o777)
    with pytest.raises(PermissionError, match="writable by no one else"):
        async with Backburner(coordination=tmp_path / "box"):
            pass


async def test_an_unsafe_default_directory_is_given_up_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone else made the default directory: it is not used, and the app still starts."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    mine = tmp_path / f"backburner-{os.getuid()}"
    mine.mkdir(mode=0o700)
    mine.chmod(0o777)
    caplog.set_level(logging.WARNING, "backburner")
    async with Backburner() as bg:
        assert bg._parts.box is None
        assert await bg.aenqueue(unique_job, "k") is not None
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "no coordination between this app's processes" in warning.getMessage()
