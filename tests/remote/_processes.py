"""Real parts for the remote engine's tests: a ``redis-server``, ``taskiq worker`` and scheduler.

Each is a ``ChildProcess`` (``tests/processes.py``) of the test run, on 127.0.0.1, its output in
a temporary directory, always stopped at the end. Each is ready once its output says so.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..processes import ChildProcess, free_port

__all__ = ["RedisServer", "TaskiqProcess"]

REDIS_SERVER = "/usr/bin/redis-server"
START_DEADLINE = 30.0


class RedisServer:
    """``redis-server`` on a free loopback port, its data (if any) in ``workdir``.

    ``persistent=False``: ``--save "" --appendonly no``, nothing outlives the process.
    ``persistent=True``: an append-only file synced at every write, so a restart (after
    ``stop()``, even a SIGKILL) comes back with every write it acknowledged.
    """

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistent = persistent
        self.process: ChildProcess | None = None
        self._starts = 0

    def start(self) -> None:
        """Start it (again, on the same port and data) and wait until it takes commands."""
        self._starts += 1
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.persistent:
            persistence = ["--appendonly", "no"]
        command = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            *persistence,
        ]  # fmt: skip
        # With no --logfile, redis-server logs to its stdout: the output file.
        self.process = ChildProcess(command, self.workdir / f"redis-{self._starts}.log")
        try:
            self.process.wait_for_output("Ready to accept connections", START_DEADLINE)
        except BaseException:
            self.stop()
            raise

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop it (by default as a crash would: SIGKILL) and wait for the process to end."""
        if self.process is not None:
            self.process.stop(sig, grace=30)
        self.process = None


class TaskiqProcess(ChildProcess):
    """``taskiq worker|scheduler <target>`` against ``redis_url``, ready once it says so.

    The target is by default ``tests.remote.worker_app:broker`` (or ``:scheduler``).
    """

    def __init__(
        self,
        kind: str,
        redis_url: str,
        workdir: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        target: str | None = None,
    ) -> None:
        self.kind = kind
        if target is None:
            name = "broker" if kind == "worker" else "scheduler"
            target = f"tests.remote.worker_app:{name}"
        command = [sys.executable, "-m", "taskiq", kind, target, *args]
        full_env = {**os.environ, "BACKBURNER_TEST_REDIS_URL": redis_url, **(env or {})}
        super().__init__(command, workdir / f"taskiq-{kind}.log", env=full_env)
        ready = "Listening started." if kind == "worker" else "Startup completed."
        try:
            self.wait_for_output(ready, START_DEADLINE)
        except BaseException:  # the caller has no process to stop yet
            self.kill()
            raise
