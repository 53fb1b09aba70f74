"""What a job costs the process while it waits: bytes, counted exactly by ``tracemalloc``.

Under a backlog these bytes, and the references the garbage collector visits in them, are
most of what an executor holds (issue 18). The bounds are this design's, with a little room.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from backburner import Backburner, _job

from .jobs import Gate, noop

pytestmark = pytest.mark.anyio

JOBS = 2_000


def _bytes_per_job(bg: Backburner) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        jobs = [bg.enqueue(noop) for _ in range(JOBS)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert bg.stats().total.pending == len(jobs)
    return (grown - JOBS * 8) / JOBS  # less the test's own list of handles


async def test_a_waiting_plain_job_holds_at_most_224_bytes() -> None:
    # Its handle (a Job of 13 slots, 136 bytes), its context copy and its place in the deque:
    # its function, options and queue are one object shared with the jobs like it, its task
    # is its queue's, its enqueue time is a float shared with the jobs accepted in the same
    # millisecond, fields few jobs set (a given id, a key, hooks, a timer, awaiters) live in
    # a record only those jobs get, and its id's number is drawn when first asked.
    gate = Gate()
    async with Backburner(workers=1, max_pending=JOBS) as bg:
        bg.enqueue(gate.hold)
        await gate.started.wait()
        try:
            assert _bytes_per_job(bg) <= 224
        finally:
            gate.opened.set()


async def test_a_jobs_id_is_drawn_once_whoever_asks_first() -> None:
    async with Backburner() as bg:
        first, second = bg.enqueue(noop), bg.enqueue(noop)
        later = second.id  # asked first: numbered first
        assert first.id != later
        assert second.id == later
        await bg.join()
        assert second.id == later  # and kept once the job ended


async def test_a_clock_stepped_back_stamps_the_jobs_after_it_with_the_new_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Jobs accepted in one millisecond share their enqueue time (one float for all of them);
    # a wall clock stepped back (an NTP step, a VM resumed) starts a new one at once, else
    # the jobs after it would be stamped later than they start, and wait a negative time.
    now = [1_800_000_000.0]
    monkeypatch.setattr(_job, "_now", lambda: now[0])
    monkeypatch.setattr(_job, "_stamp", 0.0)
    async with Backburner(workers=1) as bg:
        first, second = bg.enqueue(noop), bg.enqueue(noop)
        assert second.enqueued_at is first.enqueued_at  # one float
        now[0] -= 3600
        stepped = bg.enqueue(noop)
        assert stepped.enqueued_at == now[0]
        now[0] += 0.0005
        assert bg.enqueue(noop).enqueued_at is stepped.enqueued_at
        now[0] += 0.001
        assert bg.enqueue(noop).enqueued_at == now[0]  # a millisecond on: its own
        await bg.join()
