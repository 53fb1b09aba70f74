"""What ``http.py`` and ``yielding.py`` share: a uvicorn process on a free loopback port, ``wrk``
with a Lua hook that prints its figures as JSON, and the medians and ratios of their report.

Import it after the ``sys.path`` fix both scripts make first (this folder has an ``http.py``
that would shadow the standard library's ``http`` package, which urllib needs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["Server", "free_port", "ratio", "spread", "wrk", "wrk_script"]

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# wrk's done() hook: the figures on one line, as JSON, after "WRKJSON ".
_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"p999_us": %d, "status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``uvicorn <app>`` on ``port`` (a free one by default), ``--http httptools``, no access
    log, the environment plus ``env``; up once ``/health`` answers. Stopped by SIGTERM, or
    killed."""

    def __init__(
        self,
        app: str,
        workdir: Path,
        env: Mapping[str, str],
        *,
        loop: str = "asyncio",
        port: int | None = None,
    ) -> None:
        self.port = free_port() if port is None else port
        self.log_path = workdir / f"uvicorn-{self.port}.log"
        command = [sys.executable, "-m", "uvicorn", app]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        command += ["--log-level", "warning", "--loop", loop, "--http", "httptools"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    log_text = self.log_path.read_text()
                    raise RuntimeError(f"uvicorn did not start: {log_text}") from None
                time.sleep(0.05)

    def request(self, path: str, method: str = "GET") -> bytes:
        """The body of the answer to ``method path``."""
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body: bytes = answer.read()
            return body

    def rss_mb(self) -> float:
        """The server process's resident set now, in MiB (``VmRSS`` in ``/proc/<pid>/status``)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024  # the kernel writes kB

    def stop(self, timeout: float) -> bool:
        """SIGTERM, and wait ``timeout`` seconds for the exit; False if it was killed instead."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def wrk_script(workdir: Path) -> Path:
    """Write the Lua hook ``wrk`` takes into ``workdir``; its path."""
    lua = workdir / "report.lua"
    lua.write_text(_LUA)
    return lua


def wrk(url: str, lua: Path, seconds: int, connections: int, threads: int = 1) -> dict[str, int]:
    """Load ``url`` for ``seconds`` (wrk takes whole seconds); the hook's figures: requests,
    duration_us, p50_us, p99_us, p999_us, status_errors, socket_errors."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, int] = json.loads(line.removeprefix("WRKJSON "))
            return result
    raise RuntimeError(f"no figures from wrk: {out.stdout}{out.stderr}")


def spread(values: Sequence[float], digits: int = 1) -> str:
    """The median and, over several repeats, the range: ``8,745 (8,015-9,120)``."""
    text = f"{statistics.median(values):,.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    return text


def ratio(a: Sequence[T], b: Sequence[T], figure: Callable[[T], float | None]) -> str:
    """The median of the per-repeat ratios ``figure(a) / figure(b)``, with their range (a
    repeat whose ``figure(a)`` is None or whose ``figure(b)`` is 0 or None is passed over)."""
    if not a or not b:
        return "n/a"  # one side was not run
    values = []
    for x, y in zip(a, b, strict=True):
        top, bottom = figure(x), figure(y)
        if top is not None and bottom:
            values.append(top / bottom)
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"
