"""What an e2e app tells its test: events, one JSON object a line, in the file ``BB_E2E_EVENTS``.

Each event is one ``os.write`` to a file opened with ``O_APPEND``: it reaches the file whole and
at once, from any thread, with no buffer to flush. That matters here: after a signal, uvicorn
ends the process by re-raising the signal, and nothing buffered would survive.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

__all__ = ["record", "setting", "watch_backburner_log"]

_fd = os.open(os.environ["BB_E2E_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record(event: str, **fields: Any) -> None:
    """Append one event: its name, the wall-clock time, the process and thread, and ``fields``."""
    line = {
        "event": event,
        "t": time.time(),
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
    }
    os.write(_fd, (json.dumps({**line, **fields}) + "\n").encode())


def setting(name: str, default: float) -> float:
    """A number the test chose for this run (``BB_E2E_<NAME>``), else ``default``."""
    return float(os.environ.get(f"BB_E2E_{name.upper()}", default))


class _BackburnerEvents(logging.Handler):
    """Turns backburner's warnings and errors into events; the shutdown report keeps its ids."""

    def emit(self, record_: logging.LogRecord) -> None:
        unfinished = getattr(record_, "backburner_unfinished", None)
        if unfinished is not None:
            record("report", level=record_.levelname, unfinished=unfinished)
        else:
            record("log", level=record_.levelname, message=record_.getMessage())


def watch_backburner_log() -> None:
    """Record backburner's warnings and errors as events, and show its INFO lines on stderr."""
    logger = logging.getLogger("backburner")
    if any(isinstance(handler, _BackburnerEvents) for handler in logger.handlers):
        return  # an app that imports another app's jobs: one record per event, not two
    logger.setLevel(logging.INFO)
    events = _BackburnerEvents(logging.WARNING)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(levelname)s:     %(name)s %(message)s"))
    logger.addHandler(events)
    logger.addHandler(stderr)
