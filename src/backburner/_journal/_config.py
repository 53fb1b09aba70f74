"""``JournalConfig``: where the journal is and how it behaves, checked when it is made."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from .._checks import check_count, check_timeout

__all__ = ["SYNCHRONOUS", "Durability", "JournalConfig"]

#: "normal" survives the process being killed; "power" survives the machine losing power.
Durability = Literal["normal", "power"]
#: SQLite's ``PRAGMA synchronous`` for each durability.
SYNCHRONOUS = {"normal": "NORMAL", "power": "FULL"}


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where the journal is and how it behaves: ``Backburner(journal=JournalConfig(...))``.

    ``Backburner(journal="jobs.sqlite3")`` is ``JournalConfig("jobs.sqlite3")``: these defaults.
    """

    #: The SQLite file; created (mode 0600) if missing. Every process of an app shares it.
    path: str | os.PathLike[str]
    #: "normal": a committed job survives the process being killed (SQLite WAL,
    #: synchronous=NORMAL). "power": it also survives the machine losing power
    #: (synchronous=FULL: every commit waits for the disk).
    durability: Durability = "normal"
    #: Seconds a claim holds. A process whose heartbeat is older than this is presumed dead,
    #: and its jobs go to another process once their lease has expired too.
    lease: float = 30.0
    #: Seconds between heartbeats (and rounds of housekeeping); less than half of ``lease``.
    heartbeat: float = 5.0
    #: A job that was running every time its process died this many times is marked dead.
    max_attempts: int = 3
    #: Seconds finished jobs stay in the journal (their history) before they are pruned.
    keep_finished: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
            raise TypeError(f"journal must be a file path, got {self.path!r}")
        if self.durability not in SYNCHRONOUS:
            raise ValueError(
                f"durability must be 'normal' (survives a crash of the process) or 'power' "
                f"(survives a power loss too), got {self.durability!r}"
            )
        lease = check_timeout("lease", self.lease)
        heartbeat = check_timeout("heartbeat", self.heartbeat)
        if heartbeat <= 0 or heartbeat * 2 > lease:
            raise ValueError(
                f"heartbeat ({self.heartbeat}s) must be more than 0 and at most half of lease "
                f"({self.lease}s): a live process must renew its claim well before it lapses"
            )
        check_count("max_attempts", self.max_attempts, "crashes a job may cause before it is dead")
        check_timeout("keep_finished", self.keep_finished)
