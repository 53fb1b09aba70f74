"""Durable mode: an SQLite journal that every job is written to before it is queued.

The feature plugs into the executor through two ports: a ``JobStore`` (``JournalStore``:
write a job down, take it back) and the ``JobHooks`` each journaled job holds
(``DurableHooks``: its attempts and its end). ``open_journal`` opens the file, rebuilds the
unfinished jobs it finds into the executor's queues, and gates periodic ticks.
"""

from ._config import Durability as Durability
from ._config import JournalConfig as JournalConfig
from ._recovery import OpenJournal as OpenJournal
from ._recovery import TickGate as TickGate
from ._recovery import open_journal as open_journal
from ._store import JournalStore as JournalStore
from ._writer import Journal as Journal

__all__ = [
    "Durability",
    "Journal",
    "JournalConfig",
    "JournalStore",
    "OpenJournal",
    "TickGate",
    "open_journal",
]
