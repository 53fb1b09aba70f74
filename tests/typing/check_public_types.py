"""Checked by `mypy --strict tests` (make typecheck): the public API's types hold."""

from __future__ import annotations

from typing_extensions import assert_type

from backburner import (
    Backburner,
    Clock,
    ExecutorStats,
    Job,
    JournalConfig,
    JournalStats,
    Periodic,
    QueueConfig,
    background,
    job,
)
from backburner.testing import fake


async def fetch(url: str, *, retries: int = 0) -> bytes:
    return b""


def resize(path: str, width: int) -> tuple[int, int]:
    return (width, width)


async def check(bg: Backburner) -> None:
    assert_type(bg.enqueue(fetch, "https://example.com"), Job[bytes])
    assert_type(bg.enqueue(resize, "a.png", 640), Job[tuple[int, int]])
    assert_type(await bg.enqueue(fetch, "u", retries=2), bytes)
    assert_type(background.enqueue(resize, "a.png", width=1), Job[tuple[int, int]])
    assert_type(await bg.aenqueue(fetch, "u"), Job[bytes])
    assert_type(bg.options(queue="mail").enqueue(fetch, "u"), Job[bytes])
    bg.enqueue(resize, "a.png")  # type: ignore[call-overload]
    bg.enqueue(fetch, 42)  # type: ignore[call-overload]
    with fake() as jobs:
        assert_type(len(jobs), int)


def check_dashboard(bg: Backburner) -> None:
    from typing import Any

    from backburner.dashboard import BasicAuth, Dashboard, dashboard

    assert_type(dashboard(bg, auth=("admin", "pw")), Dashboard)
    assert_type(dashboard(auth=BasicAuth("admin", "pw"), read_only=True), Dashboard)
    assert_type(dashboard(auth=lambda request: True, allowed_hosts=["x.example"]), Dashboard)
    assert_type(bg.find_job("abc-1"), Job[Any] | None)
    assert_type(bg.paused(), frozenset[str])
    bg.pause("mail")
    bg.resume("mail")


@job(name="typing.send")
async def send(to: str) -> int:
    return 1


async def check_journal() -> None:
    bg = Backburner(journal="jobs.sqlite3", durability="power")
    Backburner(journal=JournalConfig("jobs.sqlite3", lease=10, heartbeat=2))
    Backburner(journal="jobs.sqlite3", durability="fsync")  # type: ignore[arg-type]
    assert_type(await send("a@b.c"), int)  # @job(name=...) keeps the function's type
    assert_type(bg.enqueue(send, "a@b.c"), Job[int])
    assert_type(bg.stats().journal, JournalStats | None)


async def check_background() -> None:
    """`background` has the executor's methods and attributes, with the executor's types."""
    from collections.abc import Mapping
    from typing import Any

    assert_type(background.executor, Backburner)
    assert_type(background.find_job("abc-1"), Job[Any] | None)
    assert_type(background.failures(), list[Job[Any]])
    assert_type(background.retry("abc-1"), Job[Any])
    assert_type(background.retry_all(), int)
    assert_type(background.discard(background.retry("abc-1")), bool)
    assert_type(background.discard_all(), int)
    assert_type(background.trigger("nightly"), Job[Any] | None)
    assert_type(background.paused(), frozenset[str])
    assert_type(background.stats(), ExecutorStats)
    assert_type(background.pause("mail"), None)
    assert_type(background.resume(queue="mail"), None)  # its parameters keep their names
    assert_type(background.add_periodic(Periodic(send, every=60, args=("a@b.c",))), None)
    assert_type(await background.join(), None)
    assert_type(background.running, bool)
    assert_type(background.clock, Clock)
    assert_type(background.queue_configs, Mapping[str, QueueConfig])
    assert_type(background.journal_config, JournalConfig | None)
    background.find_job(42)  # type: ignore[arg-type]
    background.pause()  # type: ignore[call-arg]
    background.retry_all(True)  # type: ignore[call-arg]
    background.stop()  # type: ignore[attr-defined]
    background.aclose()  # type: ignore[attr-defined]  # the lifecycle is the middleware's
    background.shutdown_timeout = 3.0  # type: ignore[assignment]  # read-only: set it on the executor


async def check_status() -> None:
    """Issue 13: the running job's handle, its progress, lookup's snapshot."""
    from backburner import CurrentJob, JobInfo, JobStatus, Progress, current_job

    handle = current_job()
    assert_type(handle, CurrentJob)
    assert_type(handle.id, str)
    assert_type(handle.attempt, int)
    assert_type(handle.progress, Progress | None)
    handle.set_progress(1, 10, "one")
    handle.set_progress(0.5)
    handle.set_progress(1, message=3)  # type: ignore[arg-type]
    bg = Backburner(keep_results=100, result_ttl=60.0, max_result_bytes=1024)
    info = await bg.lookup("abc-1")
    assert_type(info, JobInfo | None)
    assert_type(await background.lookup("abc-1"), JobInfo | None)
    if info is not None:
        assert_type(info.status, JobStatus)
        assert_type(info.position, int | None)
        assert_type(info.progress, Progress | None)
    progress = Progress(1, 2, None, 0.0)
    assert_type(progress.fraction, float | None)
    assert_type(progress.eta, float | None)
    bg.options(meta={"user": 7}, keep_result=False).enqueue(send, "a@b.c")
