"""Real parts for the remote engine's tests: a ``redis-server``, ``taskiq worker`` and scheduler.

Each is a subprocess of the test run, on 127.0.0.1, in a temporary directory, always stopped at
the end. Every wait polls for an event (a line in a log, a port that answers) with a deadline;
none sleeps to let something happen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..e2e._uvicorn import free_port

__all__ = ["RedisServer", "TaskiqProcess", "free_port", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]  # where `taskiq worker tests.remote.worker_app:...`
REDIS_SERVER = "/usr/bin/redis-server"
POLL = 0.02
START_DEADLINE = 30.0


def wait_for(path: Path, text: str, process: subprocess.Popen[bytes], what: str) -> None:
    """Poll the log at ``path`` until it holds ``text``; fail if ``process`` exits first."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(POLL)
    log = path.read_text(errors="replace") if path.exists() else ""
    raise AssertionError(f"{what} did not get ready (exit {process.poll()}):\n{log[-3000:]}")


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
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        """Start it (again, on the same port and data) and wait until it takes commands."""
        self._starts += 1
        log = self.workdir / f"redis-{self._starts}.log"
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
            "--logfile", str(log),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(log, "Ready to accept connections", self.process, "redis-server")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it (by default as a crash would: SIGKILL) and wait for the process to end."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None


class TaskiqProcess:
    """``taskiq worker|scheduler <target>`` against ``redis_url``.

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
        self.log = workdir / f"taskiq-{kind}.log"
        if target is None:
            name = "broker" if kind == "worker" else "scheduler"
            target = f"tests.remote.worker_app:{name}"
        command = [sys.executable, "-m", "taskiq", kind, target, *args]
        full_env = {
            **os.environ,
            "BACKBURNER_TEST_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its worker processes go with it
            )
        ready = "Listening started." if kind == "worker" else "Startup completed."
        wait_for(self.log, ready, self.process, f"taskiq {kind}")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever of it is left (worker children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")
