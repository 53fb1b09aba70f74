"""Waiting for a log record: pytest's ``caplog`` keeps the records, ``when_logged`` says when one
has arrived.

A test that must act at the moment something is logged (a job that blocks the loop until the
lag monitor has named it, a test that waits for a warning another thread logs) waits on the
event of a ``Watch`` instead of polling ``caplog.records``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Watch", "when_logged"]


class Watch(logging.Filter):
    """Sets ``seen`` at the first record that ``match`` accepts, from whichever thread logs it.

    A filter of the logger, not a handler: it lets every record through to the handlers
    (``caplog``'s among them) and only looks.
    """

    def __init__(self, match: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self.match = match
        self.seen = threading.Event()
        self.seen_at = 0.0  # time.monotonic() when the first match was logged

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.seen.is_set() and self.match(record):
            self.seen_at = time.monotonic()
            self.seen.set()
        return True


@contextmanager
def when_logged(
    match: Callable[[logging.LogRecord], bool], logger: str = "backburner"
) -> Iterator[Watch]:
    """Watch the records of ``logger`` (itself, not its children) in the block for ``match``.

    The logger's level still decides what is logged: set it with ``caplog.set_level``.
    """
    watch = Watch(match)
    target = logging.getLogger(logger)
    target.addFilter(watch)
    try:
        yield watch
    finally:
        target.removeFilter(watch)
