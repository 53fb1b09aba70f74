"""A real uvicorn process serving one of ``tests/e2e/apps``, and the events its app writes.

Every wait here has a deadline and polls for an event (an HTTP answer, a line in the event log,
the process's exit); none sleeps to let something happen.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Event", "Serve", "Uvicorn", "free_port", "running"]

ROOT = Path(__file__).resolve().parents[2]  # where `python -m uvicorn tests.e2e.apps.x:app` works
POLL = 0.02  # seconds between two looks at a file or a port

Event = dict[str, Any]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Uvicorn:
    """``python -m uvicorn tests.e2e.apps.<app>:app`` on a free port of 127.0.0.1."""

    def __init__(
        self,
        app: str,
        workdir: Path,
        settings: Mapping[str, float | str],
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True)
        self.events_path = workdir / "events.jsonl"
        self.stderr_path = workdir / "stderr.log"
        self.signalled_at: float | None = None
        environ = {**os.environ, "BB_E2E_EVENTS": str(self.events_path), "PYTHONUNBUFFERED": "1"}
        environ.update({f"BB_E2E_{name.upper()}": str(value) for name, value in settings.items()})
        environ.update(env or {})
        command = [sys.executable, "-m", "uvicorn", f"tests.e2e.apps.{app}:app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        with self.stderr_path.open("wb") as stderr:
            # Its own process group: kill() also reaches the children of --workers and --reload.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )

    def __repr__(self) -> str:
        return f"<Uvicorn {self.app} pid={self.process.pid} port={self.port}>"

    # Talking to it.

    def client(self) -> httpx.Client:
        """A client for this server (use it in ``with``: its connections close at the end)."""
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until ``GET /health`` answers (uvicorn listens only once startup completed)."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None:
                    raise AssertionError(f"{self} exited with {self.exit_code}{self.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self} not ready after {timeout}s{self.tail()}")
                time.sleep(POLL)

    # Its event log and its output.

    def events(self) -> list[Event]:
        """Every complete line of the app's event log, in the order written."""
        try:
            text = self.events_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(
        self, what: str, condition: Callable[[list[Event]], bool], timeout: float = 10.0
    ) -> list[Event]:
        """Poll the event log until ``condition(events)`` holds; fail after ``timeout`` seconds."""
        found: list[Event] = []

        def seen() -> bool:
            found[:] = self.events()
            return condition(found)

        self.wait_until(what, seen, timeout)
        return found

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition()`` until it holds; fail after ``timeout`` or if the process ends."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.returncode
                raise AssertionError(f"{self}: never saw {what} (exit code {code}){self.tail()}")
            time.sleep(POLL)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n--- uvicorn's output, last lines:\n" + "\n".join(
            self.stderr().splitlines()[-lines:]
        )

    # Stopping it.

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig``; the first signal sent starts the clock of ``wait_exit``."""
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
        self.process.send_signal(sig)

    def wait_exit(self, within: float) -> tuple[int, float]:
        """Wait for the process to end, at most ``within`` seconds from the first signal (or now).

        Returns the exit code and the seconds from the first signal to the exit.
        """
        since = self.signalled_at if self.signalled_at is not None else time.monotonic()
        try:
            code = self.process.wait(max(0.0, since + within - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self} still running {within}s on{self.tail()}") from None
        return code, time.monotonic() - since

    def assert_no_errors(self) -> None:
        """Fail if the process logged an error or a traceback (warnings are allowed)."""
        bad = [
            line
            for line in self.stderr().splitlines()
            if line.startswith(("ERROR", "CRITICAL", "Traceback")) or "never awaited" in line
        ]
        assert not bad, f"{self} logged errors: {bad}{self.tail()}"

    @property
    def exit_code(self) -> int | None:
        """The process's exit code (``-N``: ended by signal ``N``), None while it runs."""
        return self.process.poll()

    def kill(self) -> None:
        """End the process and any child it left (its process group) now, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


#: ``serve(app, settings={...}, args=[...], env={...})`` starts ``tests.e2e.apps.<app>:app``.
Serve = Callable[..., Uvicorn]


@contextmanager
def running(workdir: Path) -> Iterator[Serve]:
    """Yield ``start(app, settings={}, args=())``; kill whatever it started, at the end."""
    servers: list[Uvicorn] = []

    def start(
        app: str,
        *,
        settings: Mapping[str, float | str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Uvicorn:
        server = Uvicorn(app, workdir / f"{app}-{len(servers)}", settings or {}, args, env)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()
