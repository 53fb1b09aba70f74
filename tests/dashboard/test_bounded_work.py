"""Each request's work is bounded, whatever the size of the schedule and the queues: listings
walk only what they show, a job's page finds the job without scanning, and an unknown id
costs one scan off the event loop, shared by every tab that asks for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from backburner import Backburner, QueueConfig
from backburner.dashboard import _inspect, dashboard
from backburner.testing import ManualClock

from ..jobs import noop

pytestmark = pytest.mark.anyio

AUTH = ("admin", "pw")


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test", auth=AUTH)


async def test_a_shown_jobs_page_never_scans_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Backburner(clock=ManualClock()) as bg:
        jobs = [bg.enqueue_in(60 + i, noop, i) for i in range(5)]
        async with _client(dashboard(bg, auth=AUTH)) as client:
            listed = (await client.get("/api/scheduled")).json()
            assert [job["id"] for job in listed["jobs"]] == [job.id for job in jobs]

            def no_scan(*args: Any) -> None:
                raise AssertionError("scanned the executor for a job the dashboard showed")

            monkeypatch.setattr(_inspect, "find_waiting", no_scan)
            monkeypatch.setattr(bg, "find_job", no_scan)
            jobs[2].cancel()  # finished now: its page still polls, at no cost
            for _ in range(3):
                data = (await client.get(f"/api/jobs/{jobs[2].id}")).json()["job"]
                assert data["status"] == "cancelled"
            page = await client.get(f"/jobs/{jobs[3].id}")
            assert page.status_code == 200
            assert jobs[3].id in page.text


async def test_unknown_ids_share_one_scan_run_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Backburner(queues={"default": QueueConfig(workers=1)}) as bg:
        bg.pause("default")
        waiting = bg.enqueue(noop)  # never shown by the dashboard: only a scan finds it
        scans: list[tuple[str, bool]] = []
        real = _inspect.find_waiting

        def counted(executor: Backburner, job_id: str) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:
                on_loop = False
            scans.append((job_id, on_loop))
            return real(executor, job_id)

        monkeypatch.setattr(_inspect, "find_waiting", counted)
        async with _client(dashboard(bg, auth=AUTH)) as client:
            answers = await asyncio.gather(*(client.get("/api/jobs/nope") for _ in range(8)))
            assert {answer.status_code for answer in answers} == {404}
            assert scans == [("nope", False)]  # one scan, in a thread, for eight tabs
            found = await client.get(f"/api/jobs/{waiting.id}")
            assert found.json()["job"]["status"] == "pending"
            assert scans[-1] == (waiting.id, False)
            scans.clear()
            await client.get(f"/api/jobs/{waiting.id}")  # remembered now: no scan
            assert scans == []
        bg.resume("default")


async def test_timed_listings_clamp_their_offset_and_say_when_they_are_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queues = {"default": QueueConfig(), "other": QueueConfig()}
    async with Backburner(clock=ManualClock(), max_scheduled=10**6, queues=queues) as bg:
        for i in range(20_100):
            bg.enqueue_in(60 + i, noop, i)
        later = [bg.options(queue="other").enqueue_in(10**6, noop) for _ in range(5)]
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get("/api/scheduled?offset=999999&limit=20")).json()
            assert (data["offset"], data["total"], data["complete"]) == (10_000, 20_105, True)
            assert data["jobs"][0]["args"] == ["10000"]
            data = (await client.get("/api/scheduled?queue=other")).json()
            assert [job["id"] for job in data["jobs"]] == [job.id for job in later]
            # Behind 20,100 others, past the bound on entries visited: cut, and said so.
            monkeypatch.setattr(_inspect, "MAX_VISITS", 1000)
            data = (await client.get("/api/scheduled?queue=other")).json()
            assert (data["complete"], data["jobs"], data["total"]) == (False, [], 5)
            page = await client.get("/scheduled?queue=other")
            assert "data-incomplete" in page.text


async def test_the_busy_page_pages_like_the_others() -> None:
    gate, all_started = asyncio.Event(), asyncio.Event()
    started = 0

    async def hold(i: int) -> None:
        nonlocal started
        started += 1
        if started == 7:
            all_started.set()
        await gate.wait()

    async with Backburner(queues={"default": QueueConfig(workers=7)}) as bg:
        jobs = [bg.enqueue(hold, i) for i in range(7)]
        await all_started.wait()
        async with _client(dashboard(bg, auth=AUTH)) as client:
            first = (await client.get("/api/busy?limit=3")).json()
            last = (await client.get("/api/busy?offset=6&limit=3")).json()
            page = (await client.get("/busy?offset=3&limit=3")).text
        assert (first["total"], first["limit"], first["pages"], len(first["jobs"])) == (7, 3, 3, 3)
        assert [job["id"] for job in first["jobs"]] == [job.id for job in jobs[:3]]
        assert [job["id"] for job in last["jobs"]] == [jobs[6].id]
        assert jobs[3].id in page
        assert jobs[0].id not in page
        assert "busy?offset=6&limit=3" in page  # the "more" link
        gate.set()
