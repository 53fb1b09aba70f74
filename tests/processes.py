"""Real child processes for the tests: uvicorn serving an app, ``redis-server``, taskiq's worker
and scheduler, ``python -m demo_app``.

``ChildProcess`` owns what they share: it starts a command from the repository's root in a
session of its own (so that stopping it reaches the children it forks too), writes its output
to a file, waits for a condition or a line of output with a deadline (failing at once, with the
output's last lines, if the process ends first), sends signals, and stops it. Every wait polls
for an event with a deadline; none sleeps to let something happen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["POLL", "ROOT", "ChildProcess", "free_port", "run_without_opentelemetry"]

ROOT = Path(__file__).resolve().parents[1]  # where `python -m tests.x` and `demo_app` import
POLL = 0.02  # seconds between two looks at a file, a port or a process


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChildProcess:
    """``command`` run from the repository's root, its stdout and stderr written to ``output``.

    ``env`` is the whole environment (``os.environ`` if not given); ``PYTHONUNBUFFERED=1`` is
    added so that a Python child's lines reach the file as it writes them. The child leads a
    process group of its own: ``stop()`` and ``kill()`` reach whatever it started.
    """

    def __init__(
        self, command: Sequence[str], output: Path, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.command = list(command)
        self.output_path = output
        self.signalled_at: float | None = None
        environ = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        with output.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {Path(self.command[0]).name} pid={self.process.pid}>"

    @property
    def exit_code(self) -> int | None:
        """The process's exit code (``-N``: ended by signal ``N``), None while it runs."""
        return self.process.poll()

    # Its output.

    def output(self) -> str:
        """Everything it wrote so far, stdout and stderr interleaved."""
        return self.output_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of its output, to end a failure's message with."""
        last = self.output().splitlines()[-lines:]
        return f"\n--- {self}'s output, last lines:\n" + "\n".join(last)

    # Waiting.

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition()`` until it holds; fail after ``timeout`` or if the process ends."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.returncode
                raise AssertionError(f"{self}: never saw {what} (exit code {code}){self.tail()}")
            time.sleep(POLL)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` shows in its output (a line that says it is ready, say)."""
        self.wait_until(repr(text), lambda: text in self.output(), timeout)

    # Signals and the end.

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process; the first signal sent starts the clock of ``wait_exit``."""
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

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 10.0) -> None:
        """Send ``sig`` to its process group, give it ``grace`` seconds, then ``kill()``."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        self.kill()

    def kill(self) -> None:
        """End the process and any child it left (its process group) now, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


# Put first in a child's script: from then on, importing opentelemetry fails as it does where
# the package is not installed (it is, in the tests' venv).
_BLOCK_OPENTELEMETRY = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Blocked())
"""


def run_without_opentelemetry(script: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (dedented) in a fresh interpreter, from the repository's root, where
    opentelemetry cannot be imported; its output as text. Not checked: the test reads it."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_OPENTELEMETRY + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
