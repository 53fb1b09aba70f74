"""Limits with ``scope="host"``: tokens and rate windows shared by the app's processes on a host.

Why the coordination directory and not the journal's SQLite: it is there with or without a
journal (``uvicorn --workers 4`` in memory is the common case that needs a host-wide rate
limit), it never contends with the journal writer's transactions, and a ``flock`` of a small
file costs microseconds, where a SQLite write transaction costs a commit (an fsync).

One file per (limit, key) under ``limits/`` in the coordination directory, found by the
limit's kind, name and key (so every process must give a host limit the same name; the
default name is made from its numbers). It holds one line per token::

    c PROCESS JOB           a concurrency token held by JOB of PROCESS ("pid.token")
    r PROCESS JOB TIME      a start in the rate window; TIME "inf": let go, not started yet

Each change (a take, a start, an end) reads and rewrites the file under its ``flock``: that is
the cost, one short file lock per take, per start (rate limits only) and per end. The lock is
held only for that read and write, never while waiting for a token. A rate limit's file
holds up to ``limit`` lines, so each change costs O(limit): measured here, 2,000 no-op jobs
ran at ~5,600/s under ``ConcurrencyLimit(8, scope="host")`` (~9,000/s per process), and at
~740/s under a ``RateLimit(100_000, per=1, scope="host")`` that kept thousands of lines: meant
for an upstream's limits (tens to a few thousand starts per window), not for throughput.

A token of a process that is dead (its live-process file in ``procs/`` is unlocked or gone)
is dropped by whoever next reads the file, so a SIGKILLed process frees its tokens as soon as
another one looks; the starts it made stay in the rate window until they leave it (the
upstream saw them). Times are the executor's clock (``time.time()``, one for the whole host).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ._limitdefs import ConcurrencyLimit, Limit, RateLimit

__all__ = ["POLL", "HostBuckets", "bucket_file"]

#: Seconds between two looks at the shared files while a host limit holds jobs here (a
#: thread looks, never the event loop); a token freed in another process is seen this late.
POLL = 0.05

_HostItem = tuple[Limit, str | None]


def bucket_file(directory: Path, limit: Limit, key: str | None) -> Path:
    """The file of ``limit``'s bucket for ``key``: its name made safe, unique by a hash."""
    identity = f"{limit.kind}\0{limit.name}\0{'' if key is None else '=' + key}"
    digest = hashlib.blake2b(identity.encode(errors="replace"), digest_size=8).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", limit.name)[:40]
    return directory / "limits" / f"{limit.kind}-{safe}-{digest}"


class HostBuckets:
    """This process's side of the shared buckets. Called under ``_limits.Limits``'s lock."""

    def __init__(self, directory: Path, me: str, alive: Callable[[str], bool]) -> None:
        """``me``: this process's name in ``procs/``; ``alive(name)``: is that process alive."""
        self.directory = directory
        self.me = me
        self._alive = alive

    def take(self, job: str, items: Sequence[_HostItem], now: float) -> int | None:
        """Take a token of each (limit, key) for ``job``: None, or the index of the first
        that refuses (the ones taken before it are given back)."""
        for index, (limit, key) in enumerate(items):
            if not self._edit(limit, key, _take, limit, self, job, now):
                for taken, taken_key in items[:index]:
                    self._edit(taken, taken_key, _drop, self.me, job)
                return index
        return None

    def started(self, job: str, items: Sequence[_HostItem], now: float) -> None:
        """``job`` starts now: its rate starts count from now."""
        for limit, key in items:
            if isinstance(limit, RateLimit):
                self._edit(limit, key, _stamp, self.me, job, now)

    def release(self, job: str, items: Sequence[_HostItem]) -> None:
        """``job``'s attempt ended: its concurrency tokens back."""
        for limit, key in items:
            if isinstance(limit, ConcurrencyLimit):
                self._edit(limit, key, _drop, self.me, job)

    def forget(self, job: str, items: Sequence[_HostItem]) -> None:
        """``job`` was cancelled before it started: its tokens and its reserved starts (which
        no start will stamp) go, so no window counts it."""
        for limit, key in items:
            self._edit(limit, key, _drop, self.me, job)

    def _edit(
        self, limit: Limit, key: str | None, change: Callable[..., bool], *args: object
    ) -> bool:
        """Run ``change(lines, *args)`` on the bucket's lines under its lock; write them back
        if it changed them; return what it returned."""
        path = bucket_file(self.directory, limit, key)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write, never longer
            data = _read_all(fd)
            lines = data.decode(errors="replace").splitlines()
            before = list(lines)
            done = change(lines, *args)
            if lines != before:
                text = "".join(line + "\n" for line in lines).encode()
                os.pwrite(fd, text, 0)
                os.ftruncate(fd, len(text))
            return done
        finally:
            os.close(fd)

    def alive(self, name: str) -> bool:
        """Is process ``name`` alive (this one always is)."""
        return name == self.me or self._alive(name)


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _take(lines: list[str], limit: Limit, host: HostBuckets, job: str, now: float) -> bool:
    """Prune the dead and the old, then take a token if there is room (True)."""
    verdicts: dict[str, bool] = {}
    kept = []
    horizon = now - limit.per if isinstance(limit, RateLimit) else 0.0
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[0] not in ("c", "r"):
            continue  # (a line torn by a full disk: dropped)
        owner = fields[1]
        if fields[0] == "r" and len(fields) == 4 and fields[3] != "inf":
            try:
                if float(fields[3]) <= horizon:
                    continue  # left the window
            except ValueError:
                continue
            kept.append(line)  # a start stays in the window, its process dead or not
            continue
        if owner not in verdicts:
            verdicts[owner] = host.alive(owner)
        if verdicts[owner]:
            kept.append(line)
    lines[:] = kept
    if isinstance(limit, ConcurrencyLimit):
        if len(lines) >= limit.max:
            return False
        lines.append(f"c {host.me} {job}")
        return True
    assert isinstance(limit, RateLimit)
    if len(lines) >= limit.limit:
        return False
    lines.append(f"r {host.me} {job} inf")
    return True


def _drop(lines: list[str], me: str, job: str) -> bool:
    lines[:] = [line for line in lines if line.split()[1:3] != [me, job]]
    return True


def _stamp(lines: list[str], me: str, job: str, now: float) -> bool:
    reserved = f"r {me} {job} inf"
    for index, line in enumerate(lines):
        if line == reserved:
            lines[index] = f"r {me} {job} {now!r}"
    return True
