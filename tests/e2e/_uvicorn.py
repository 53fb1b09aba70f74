"""A real uvicorn process serving one of ``tests/e2e/apps``, and the events its app writes.

Starting, waiting, signals and stopping are ``tests/processes.py``'s ``ChildProcess``; this adds
the app, the readiness check over HTTP and the event log. Every wait here has a deadline and
polls for an event (an HTTP answer, a line in the event log, the process's exit); none sleeps
to let something happen.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ..processes import ChildProcess, free_port

__all__ = ["Event", "Serve", "Uvicorn", "running"]

Event = dict[str, Any]


class Uvicorn(ChildProcess):
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
        environ = {**os.environ, "BB_E2E_EVENTS": str(self.events_path)}
        environ.update({f"BB_E2E_{name.upper()}": str(value) for name, value in settings.items()})
        environ.update(env or {})
        command = [sys.executable, "-m", "uvicorn", f"tests.e2e.apps.{app}:app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        super().__init__(command, workdir / "uvicorn.log", env=environ)

    def __repr__(self) -> str:
        return f"<Uvicorn {self.app} pid={self.process.pid} port={self.port}>"

    # Talking to it.

    def client(self) -> httpx.Client:
        """A client for this server (use it in ``with``: its connections close at the end)."""
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until ``GET /health`` answers (uvicorn listens only once startup completed)."""
        with self.client() as client:

            def healthy() -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            self.wait_until("GET /health answer 200", healthy, timeout)

    # Its event log.

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

    def assert_no_errors(self) -> None:
        """Fail if the process logged an error or a traceback (warnings are allowed)."""
        bad = [
            line
            for line in self.output().splitlines()
            if line.startswith(("ERROR", "CRITICAL", "Traceback")) or "never awaited" in line
        ]
        assert not bad, f"{self} logged errors: {bad}{self.tail()}"


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
