"""Periodic jobs: every N seconds and cron, under a driven clock; no overlap, no double ticks."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import anyio
import pytest

from backburner import Backburner, Periodic
from backburner.testing import ManualClock

from .jobs import noop

pytestmark = pytest.mark.anyio

runs: list[float] = []


@pytest.fixture(autouse=True)
def clear() -> None:
    runs.clear()


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    tz: timezone | ZoneInfo = timezone.utc,
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


async def test_every_n_seconds_fires_on_its_grid_and_stats_show_the_next_run() -> None:
    clock = ManualClock(at(2026, 1, 1, 0, 0, 5))

    async def tick() -> None:
        pass

    ticks: list[float | None] = []
    async with Backburner(clock=clock, periodic=[Periodic(tick, every=60, name="tick")]) as bg:
        [stats] = bg.stats().periodic
        assert (stats.name, stats.schedule, stats.next_run) == (
            "tick",
            "every 60s",
            at(2026, 1, 1, 0, 1),
        )
        for _ in range(3):
            clock.advance(60)
            await bg.join()
            ticks.append(bg.stats().periodic[0].last_run)
        assert ticks == [at(2026, 1, 1, 0, 1), at(2026, 1, 1, 0, 2), at(2026, 1, 1, 0, 3)]
        assert bg.stats().periodic[0].runs == 3
        assert bg.stats().periodic[0].next_run == at(2026, 1, 1, 0, 4)


async def test_a_cron_job_fires_at_the_right_minutes_in_its_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    clock = ManualClock(at(2026, 3, 2, 8, 50, tz=paris))  # a Monday

    async def digest() -> None:
        pass

    spec = Periodic(digest, cron="0,30 9 * * mon-fri", tz="Europe/Paris", name="digest")
    ticks: set[float | None] = set()
    async with Backburner(clock=clock, periodic=[spec]) as bg:
        for _ in range(6):
            clock.advance(15 * 60)
            await bg.join()
            ticks.add(bg.stats().periodic[0].last_run)
        assert bg.stats().periodic[0].runs == 2
        # Monday 10:20 now: the next run is Tuesday 9:00, Paris time.
        assert bg.stats().periodic[0].next_run == at(2026, 3, 3, 9, 0, tz=paris)
    assert ticks - {None} == {at(2026, 3, 2, 9, 0, tz=paris), at(2026, 3, 2, 9, 30, tz=paris)}


async def test_a_tick_that_finds_the_last_run_still_going_is_skipped_and_counted() -> None:
    clock = ManualClock(at(2026, 1, 1))
    gate = asyncio.Event()

    async def slow() -> None:
        runs.append(clock.now())
        await gate.wait()

    async with Backburner(clock=clock, periodic=[Periodic(slow, every=10)]) as bg:
        clock.advance(10)
        await anyio.wait_all_tasks_blocked()
        clock.advance(10)
        clock.advance(10)
        [stats] = bg.stats().periodic
        assert (stats.runs, stats.skipped) == (1, 2)
        gate.set()
        await bg.join()
        clock.advance(10)
        await bg.join()
    assert len(runs) == 2


async def test_overlap_true_lets_runs_overlap() -> None:
    clock = ManualClock(at(2026, 1, 1))
    gate = asyncio.Event()

    async def slow() -> None:
        runs.append(clock.now())
        await gate.wait()

    async with Backburner(clock=clock, periodic=[Periodic(slow, every=10, overlap=True)]):
        clock.advance(10)
        clock.advance(10)
        await anyio.wait_all_tasks_blocked()
        assert len(runs) == 2
        gate.set()


async def test_a_clock_jump_over_many_ticks_fires_once_never_twice_for_a_tick() -> None:
    clock = ManualClock(at(2026, 1, 1))

    async def tick() -> None:
        runs.append(clock.now())

    async with Backburner(clock=clock, periodic=[Periodic(tick, every=60)]) as bg:
        clock.advance(10 * 60 + 30)  # asleep through ten ticks
        await bg.join()
        # The first due tick runs; the other nine find it still pending and are skipped.
        [stats] = bg.stats().periodic
        assert (len(runs), stats.runs, stats.skipped) == (1, 1, 9)
        clock.advance(0)
        await bg.join()
        assert len(runs) == 1  # no tick fires twice
        assert bg.stats().periodic[0].next_run == at(2026, 1, 1, 0, 11)


async def test_trigger_runs_a_periodic_job_now() -> None:
    clock = ManualClock(at(2026, 1, 1))

    async def report() -> None:
        runs.append(clock.now())

    async with Backburner(clock=clock, periodic=[Periodic(report, cron="0 0 1 * *")]) as bg:
        job = bg.trigger("test_trigger_runs_a_periodic_job_now.<locals>.report")
        assert job is not None
        await job
        with pytest.raises(ValueError, match="no periodic job named 'nope'"):
            bg.trigger("nope")
    assert runs == [at(2026, 1, 1)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one schedule"),
        ({"every": 5, "cron": "* * * * *"}, "exactly one schedule"),
        ({"every": 0}, "every must be more than 0"),
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 5, "args": (1,)}, "too many positional arguments"),
    ],
)
def test_bad_periodic_jobs_are_refused_where_they_are_written(
    kwargs: dict[str, object], message: str
) -> None:
    async def takes_nothing() -> None:  # so that args=(1,) is refused
        pass

    with pytest.raises((TypeError, ValueError), match=message):
        Periodic(takes_nothing, **kwargs)  # type: ignore[arg-type]


def test_two_periodic_jobs_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        Backburner(periodic=[Periodic(noop, every=1), Periodic(noop, every=2)])
