"""What a test reads from a server that was given work, signalled, and has exited.

``Run`` holds the event log the app wrote (``enqueued`` with key and job id, ``started``,
``finished``, the shutdown ``report``); ``assert_every_job_accounted_for`` is the contract:
finished plus reported is exactly what was accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._uvicorn import Event, Uvicorn

__all__ = [
    "MARGIN",
    "Run",
    "assert_every_job_accounted_for",
    "named",
    "position",
    "started",
]

#: How much longer than ``shutdown_timeout`` the process may take to exit after the signal:
#: uvicorn's own steps (a 0.1 s tick, a 0.1 s pause, closing connections) and a loaded machine.
MARGIN = 3.0


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event["event"] == name]


def position(events: list[Event], name: str, key: str | None = None) -> int:
    """The index of the one event ``name`` (for ``key``) in the log."""
    found = [
        i
        for i, event in enumerate(events)
        if event["event"] == name and (key is None or event.get("key") == key)
    ]
    assert len(found) == 1, f"expected one {name!r} event for {key!r}, found {len(found)}"
    return found[0]


@dataclass
class Run:
    """A server that was given work, signalled, and has exited; what its app recorded."""

    server: Uvicorn
    accepted: dict[str, str]  # key -> job id, as the HTTP answers gave them
    exit_code: int = 0
    elapsed: float = 0.0  # from the first signal to the exit
    events: list[Event] = field(default_factory=list)

    def finish(self, within: float) -> None:
        self.exit_code, self.elapsed = self.server.wait_exit(within)
        self.events = self.server.events()

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """The ids and statuses of the one shutdown report (none if every job finished)."""
        reports = named(self.events, "report")
        assert len(reports) <= 1, f"expected one shutdown report, got {len(reports)}"
        return reports[0]["unfinished"] if reports else []

    @property
    def status_by_key(self) -> dict[str, str]:
        """The reported status of every unfinished job, by the key the app gave it."""
        key_of = {event["id"]: event["key"] for event in named(self.events, "enqueued")}
        return {key_of[job["id"]]: job["status"] for job in self.unfinished}

    def drained(self) -> int:
        """How many jobs were pending or running when the drain began (from its INFO line)."""
        match = re.search(r"draining (\d+) jobs", self.server.output())
        assert match, f"no drain line{self.server.tail()}"
        return int(match[1])


def started(*keys: str) -> Callable[[list[Event]], bool]:
    """A condition for ``wait_for``: every one of ``keys`` has started."""
    return lambda events: set(keys) <= {event.get("key") for event in named(events, "started")}


def assert_every_job_accounted_for(run: Run) -> None:
    """Finished plus reported is exactly what was accepted: no id lost, none counted twice."""
    enqueued = {event["key"]: event["id"] for event in named(run.events, "enqueued")}
    assert len(enqueued) == len(named(run.events, "enqueued")), "a key was enqueued twice"
    assert {key: enqueued.get(key) for key in run.accepted} == run.accepted
    assert len(set(enqueued.values())) == len(enqueued), "two jobs were given one id"
    key_of = {job_id: key for key, job_id in enqueued.items()}
    reported_ids = [job["id"] for job in run.unfinished]
    assert set(reported_ids) <= set(key_of), "the report names ids that were never enqueued"
    finished = [event["key"] for event in named(run.events, "finished")]
    reported = [key_of[job_id] for job_id in reported_ids]
    assert len(finished) == len(set(finished)), "a job finished twice"
    assert len(reported) == len(set(reported)), "a job was reported twice"
    assert not set(finished) & set(reported), "jobs both finished and reported unfinished"
    assert set(finished) | set(reported) == set(enqueued), (
        f"{len(set(enqueued) - set(finished) - set(reported))} accepted jobs neither "
        f"finished nor were reported"
    )
