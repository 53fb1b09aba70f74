"""``accepted(job, url)``: a 202 whose Retry-After comes from the queue's recent pace.

The pace is read from the executor's history, sampled every 5 s on its clock: a
``ManualClock`` moved by the test takes each sample when the test says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backburner import Backburner, JobStatus, Progress, current_job
from backburner.status import _accepted as accepted_module
from backburner.status import accepted, status_app
from backburner.status._accepted import estimate
from backburner.testing import ManualClock

from ..jobs import Gate, noop

pytestmark = pytest.mark.anyio

URL = "/status/some-id?expires=1&sig=x"


@pytest.fixture
async def paced() -> AsyncIterator[tuple[Backburner, Gate]]:
    """Two workers, both held by the gate, after a sample that saw 10 jobs end in 5 s with
    both workers busy: each job held a worker 1 s, so the queue ends 2 jobs a second."""
    clock = ManualClock()
    async with Backburner(clock=clock, workers=2, max_pending=1000) as bg:
        for _ in range(10):
            bg.enqueue(noop)
        await bg.join()
        gate = Gate()
        bg.enqueue(gate.hold)
        bg.enqueue(gate.hold)
        await gate.started.wait()
        clock.advance(5)
        yield bg, gate
        gate.opened.set()


async def test_the_answer_is_202_with_the_location_and_the_jobs_id(
    paced: tuple[Backburner, Gate],
) -> None:
    bg, _ = paced
    job = bg.enqueue(noop)

    answer = accepted(job, URL)

    assert answer.status_code == 202
    assert answer.headers["location"] == URL
    assert answer.headers["cache-control"] == "no-store"
    assert answer.body == b'{"id":"%s","status":"pending","status_url":"%s"}' % (
        job.id.encode(),
        URL.encode(),
    )


async def test_a_waiting_job_retries_after_the_jobs_ahead_end_at_the_queues_pace(
    paced: tuple[Backburner, Gate],
) -> None:
    bg, _ = paced
    for _ in range(19):
        bg.enqueue(noop)
    job = bg.enqueue(noop)  # 19 ahead, 2 jobs a second: its turn comes in 10 s

    assert accepted(job, URL).headers["retry-after"] == "10"
    assert accepted(job, URL, bounds=(1, 5)).headers["retry-after"] == "5"


async def test_the_status_route_tells_each_waiting_job_its_own_retry_after(
    paced: tuple[Backburner, Gate],
) -> None:
    bg, _ = paced
    jobs = [bg.enqueue(noop) for _ in range(10)]
    app = status_app(bg, authorize=lambda request, info: True)
    transport = httpx.ASGITransport(app=app)

    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [await client.get(f"/{jobs[n].id}") for n in (0, 5, 9)]

    # Positions 0, 5, 9 at 2 jobs a second: 0.5, 3 and 5 s, rounded up.
    assert [a.headers["retry-after"] for a in answers] == ["1", "3", "5"]


async def test_a_job_in_a_paused_queue_retries_after_the_upper_bound(
    paced: tuple[Backburner, Gate],
) -> None:
    bg, _ = paced
    bg.pause("default")
    job = bg.enqueue(noop)

    assert accepted(job, URL).headers["retry-after"] == "60"
    bg.resume("default")


async def test_without_history_the_estimate_is_the_default() -> None:
    async with Backburner(workers=1) as bg:
        gate = Gate()
        bg.enqueue(gate.hold)
        job = bg.enqueue(noop)

        assert accepted(job, URL).headers["retry-after"] == "2"
        gate.opened.set()


async def test_a_scheduled_job_retries_after_it_is_due() -> None:
    async with Backburner(clock=ManualClock()) as bg:
        job = bg.enqueue_in(42.5, noop)

        assert accepted(job, URL).headers["retry-after"] == "43"


async def test_a_finished_job_retries_after_zero_seconds() -> None:
    async with Backburner() as bg:
        job = bg.enqueue(noop)
        await bg.join()

        answer = accepted(job, URL)

    assert answer.headers["retry-after"] == "0"
    assert b'"status":"succeeded"' in answer.body


def test_a_running_job_retries_after_the_eta_of_its_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 of 100 done at 2 a second: 40 s left at the report, 25 s left 15 s later.
    progress = Progress(done=20, total=100, message=None, updated_at=1_000_000.0, rate=2.0)
    now = [1_000_000.0]
    monkeypatch.setattr(accepted_module, "_now", lambda: now[0])

    def seconds() -> int:
        return estimate(
            None, JobStatus.RUNNING, "default", progress, 999_990.0, position=None,
            due_in=None, bounds=(1, 60),
        )  # fmt: skip

    at_report = seconds()
    now[0] += 15
    later = seconds()
    now[0] += 30  # behind its own estimate: its rate tells nothing more

    assert (at_report, later, seconds()) == (40, 25, 2)


async def test_accepted_reads_the_progress_of_a_running_job() -> None:
    reported, held = Gate(), Gate()

    async def almost_done() -> None:
        current_job().set_progress(10, 10)  # all done: nothing left to wait for
        await reported.hold()

    async with Backburner(workers=2) as bg:
        job = bg.enqueue(almost_done)
        silent = bg.enqueue(held.hold)  # no progress, no history: the default
        await reported.started.wait()
        await held.started.wait()
        answers = accepted(job, URL), accepted(silent, URL)
        reported.opened.set()
        held.opened.set()

    assert [answer.headers["retry-after"] for answer in answers] == ["1", "2"]


@pytest.mark.parametrize(
    ("job", "url", "error"),
    [("job-id", URL, TypeError), (None, "", TypeError), (None, "/a\r\nSet-Cookie: x", ValueError)],
)
async def test_bad_arguments_are_refused(job: Any, url: str, error: type[Exception]) -> None:
    async with Backburner() as bg:
        handle = bg.enqueue(noop) if job is None else job
        with pytest.raises(error):
            accepted(handle, url)
