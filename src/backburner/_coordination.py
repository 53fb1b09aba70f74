"""The processes of one app on one host, told apart through a directory they share.

``uvicorn --workers 3`` runs three copies of the app; without a journal each would fire every
periodic tick. On one host they share a file system, and ``fcntl.flock`` is enough to agree:

* **ticks**: one file per periodic job holds the last tick fired and the pid that fired it.
  A process takes the file's lock without waiting (``LOCK_NB``), and fires the tick only if
  the file holds an earlier one; then writes it. A process that finds the lock taken lets the
  holder fire. So each tick fires once, ticks stay on their grid (each process computes them),
  and a process that dies loses at most the tick it was firing (the kernel drops its lock).
* **siblings**: each process holds a lock on a file named for it in ``procs/`` for as long as
  it lives; a file whose lock can be taken is a dead process's, and is removed. Counting the
  held files tells how many processes of the app run now (for the startup warning, and the
  dashboard's "one process of several").

The directory is ``coordination=`` (a path), or by default one derived from the app (its
parent process, working directory and command line: the workers of one server share them)
under ``$XDG_RUNTIME_DIR`` or the temp directory. It is created 0700; a directory that is not
the user's, or that others may write to, is refused (``PermissionError``): whoever can write
there could silence the periodic jobs. Nothing here waits for a lock: the event loop never
blocks on another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from ._options import options_of
from ._periodic import Claim, Periodic, PeriodicJobs
from ._registry import registered

__all__ = [
    "Coordination",
    "FileTickGate",
    "coordination_for",
    "default_directory",
    "live_processes",
    "open_coordination",
    "tick_file",
]

logger = logging.getLogger("backburner")

_RECORD = re.compile(rb"^(\S+) (\d+) (\S+)")
_PROCESS_NAME = re.compile(r"^\d+\.[0-9a-f]+$")
#: Seconds after start before a process counts its siblings: the workers of one server start
#: together, so by then the count is whole and only one of them has something to say.
SIBLINGS_CHECK_AFTER = 3.0


def open_coordination(
    setting: str | os.PathLike[str] | bool, periodic: PeriodicJobs, in_memory: bool
) -> Coordination | None:
    """Open the ``coordination=`` directory for an executor; in memory, its ticks go through it.

    A directory given by name that cannot be used raises (``PermissionError`` if it is not
    safe); the default one is then given up with a WARNING.
    """
    coordination = coordination_for(setting)
    if coordination is None:
        return None
    try:
        coordination.open(in_memory=in_memory)
    except OSError as exc:
        if setting is not True:
            raise  # a directory given by name: its problem is the app's to fix
        # The default one: not worth failing the app for. Each process then fires every tick.
        logger.warning(
            "no coordination between this app's processes: %s. Periodic jobs fire in each "
            "process; give coordination= a directory of your own, or a journal",
            exc,
        )
        return None
    if in_memory:
        periodic.gate = FileTickGate(coordination)
    return coordination


def coordination_for(setting: str | os.PathLike[str] | bool) -> Coordination | None:
    """The ``coordination=`` setting's directory: its own, the default (True) or none (False)."""
    if setting is False:
        return None
    if setting is True:
        return Coordination(default_directory(), private_parent=True)
    return Coordination(setting)


def default_directory() -> Path:
    """The directory of this app's processes: under the runtime (or temp) directory.

    Named for the parent process (the server's supervisor), the working directory and the
    command line: what the workers of one server share and two servers seldom do.
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    app = "\0".join([str(os.getppid()), os.getcwd(), *sys.argv])
    digest = hashlib.blake2b(app.encode(errors="replace"), digest_size=8).hexdigest()
    return Path(base) / f"backburner-{os.getuid()}" / digest


class Coordination:
    """This process's place in its app's coordination directory, from ``open()`` to ``close()``."""

    def __init__(self, directory: str | os.PathLike[str], *, private_parent: bool = False) -> None:
        """``private_parent``: the parent directory is ours too (the default's) and checked."""
        self.directory = Path(os.fspath(directory)).absolute()
        self._folders = [self.directory.parent] if private_parent else []
        self._folders += [self.directory, self.directory / "procs", self.directory / "ticks"]
        self._folders.append(self.directory / "limits")  # host-scoped limits (_hostlimits)
        self.pid = os.getpid()
        self._token = secrets.token_hex(4)
        self._held: int | None = None  # the fd whose lock says this process lives
        self._check: asyncio.TimerHandle | None = None
        self._in_memory = True
        self._name = f"{self.pid}.{self._token}"

    def __repr__(self) -> str:
        return f"<Coordination {self.directory}>"

    def open(self, *, in_memory: bool = True) -> None:
        """Make (or check) the directory and say this process lives; ``PermissionError`` if
        the directory is not safe to use. ``in_memory``: no journal (see ``check_later``)."""
        self._in_memory = in_memory
        for folder in self._folders:
            _make_private(folder)
        # Locked under a temporary name, then renamed: a sibling counting meanwhile never
        # sees this file unlocked (and takes it for a dead process's).
        procs = self.directory / "procs"
        temporary = procs / f".{self._name}"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, procs / self._name)
        self._held = fd
        # Sweep the files of dead processes now: with a journal nobody else counts siblings,
        # and a worker killed and restarted over and over would leave one file a kill.
        with contextlib.suppress(OSError):  # (a sweep is not worth failing the start for)
            live_processes(self.directory, but=self._name)

    def check_later(self, loop: asyncio.AbstractEventLoop) -> None:
        """In memory: a little after start, warn if siblings run what they cannot share."""
        if self._in_memory:
            self._check = loop.call_later(SIBLINGS_CHECK_AFTER, self.warn_if_several_in_memory)

    def close(self) -> None:
        """Say this process has left (its file goes; its lock goes with the fd). Returns None."""
        if self._check is not None:
            self._check.cancel()
            self._check = None
        fd, self._held = self._held, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / "procs" / self._name)
        os.close(fd)

    @property
    def name(self) -> str:
        """This process's (this executor's) name in ``procs/``: ``pid.token``."""
        return self._name

    def alive(self, name: str) -> bool:
        """Whether the process (executor) named ``name`` in ``procs/`` is alive."""
        if not _PROCESS_NAME.match(name):
            return False  # (not a name this module makes: never a path to look at)
        return _held(self.directory / "procs" / name)

    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()``."""
        return self._held is not None

    def processes(self) -> list[int]:
        """The pids of the app's live processes, this one included (sorted); the files of
        dead ones are removed on the way."""
        pids = set(live_processes(self.directory, but=self._name))
        if self.is_open:
            pids.add(self.pid)
        return sorted(pids)

    def claim_tick(self, name: str, tick: float) -> Claim:
        """Whether this process fires periodic job ``name``'s ``tick``; never waits."""
        path = tick_file(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return Claim(False, None)  # a sibling is firing it right now
                raise
            record = _RECORD.match(os.pread(fd, 256, 0))
            if record is not None:
                last, pid, token = float(record[1]), int(record[2]), record[3].decode()
                # Another executor of this very process (a test's, a restart's) is no sibling.
                sibling = pid != self.pid or token == self._token
                if sibling and last >= tick:
                    return Claim(False, pid)
            line = f"{tick!r} {self.pid} {self._token}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)
            return Claim(True, self.pid)
        finally:
            os.close(fd)  # (and with it the lock)

    def warn_if_several_in_memory(self) -> None:
        """Log one WARNING for the app when several in-memory processes use what they do not
        share (unique keys): the first process to count N of them says it, once for N."""
        uses = unshared()
        if not uses or not self.is_open:
            return
        try:
            self._warn(uses)
        except OSError as exc:  # a warning is not worth failing for
            logger.debug("could not count this app's processes in %s: %s", self.directory, exc)

    def _warn(self, uses: list[str]) -> None:
        pids = self.processes()
        if len(pids) < 2:
            return
        fd = os.open(self.directory / "warned", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # a sibling is saying it right now
            said = os.pread(fd, 32, 0).split()
            if said and said[0].isdigit() and int(said[0]) >= len(pids):
                return  # said already, for as many processes
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{len(pids)}\n".encode(), 0)
        finally:
            os.close(fd)
        logger.warning(
            "%d processes of this app run side by side (pids %s), each with its own in-memory "
            "executor: they do not share %s. Give them a shared journal "
            "(journal='path/jobs.sqlite3') to make them one",
            len(pids),
            ", ".join(map(str, pids)),
            " or ".join(uses),
        )


def live_processes(directory: Path, but: str = "") -> list[int]:
    """The pids of the live processes of the app whose directory this is (their files but
    ``but`` held; those of dead ones are removed on the way), sorted."""
    procs = directory / "procs"
    try:
        names = os.listdir(procs)
    except OSError:
        return []
    pids = set()
    for name in names:
        pid = name.partition(".")[0]
        if name.startswith(".") or not pid.isdigit() or name == but:
            continue
        if _held(procs / name):
            pids.add(int(pid))
    return sorted(pids)


def unshared() -> list[str]:
    """What this app uses that in-memory processes do not share: unique keys (``@job(unique=)``)."""
    if any(options_of(entry.fn).unique is not None for entry in registered()):
        return ["unique keys (each process holds its own)"]
    return []


class FileTickGate:
    """Periodic ticks through the coordination directory: each fired by one process of the app.

    Without a journal nothing outlives the processes: a tick missed while all were down is
    not fired later (``missed`` is always None).
    """

    def __init__(self, coordination: Coordination) -> None:
        self.coordination = coordination

    def claim(self, name: str, tick: float) -> Claim:
        """See ``Coordination.claim_tick``; a directory that fails says so and fires locally."""
        try:
            return self.coordination.claim_tick(name, tick)
        except OSError as exc:
            logger.warning(
                "periodic job %s: the coordination directory %s failed (%s); firing this tick "
                "here, maybe in other processes too",
                name,
                self.coordination.directory,
                exc,
            )
            return Claim(True, os.getpid())

    def missed(self, spec: Periodic, now: float) -> float | None:
        """None: in memory, a tick nobody fired while all processes were down is gone."""
        return None


def tick_file(directory: Path, name: str) -> Path:
    """The file of periodic job ``name``'s ticks: its name made safe, and unique by a hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    return (
        directory / "ticks" / f"{safe}-{hashlib.blake2b(name.encode(), digest_size=6).hexdigest()}"
    )


def _held(path: Path) -> bool:
    """True if a live process holds ``path``'s lock; a dead process's file is removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # under its lock: its process is gone
        return False
    finally:
        os.close(fd)


def _make_private(folder: Path) -> None:
    """Create ``folder`` 0700 if missing; refuse one that is not ours or others may write."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(
            f"the coordination directory {folder} is not a directory (a link?): give "
            f"coordination= a directory of your own"
        )
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"the coordination directory {folder} is not safe: it belongs to uid {info.st_uid} "
            f"with mode {stat.S_IMODE(info.st_mode):o}; it must be this user's (uid "
            f"{os.getuid()}) and writable by no one else (chmod 700), since whoever writes "
            f"there can stop the periodic jobs. Fix it or give coordination= another path"
        )
