"""The dashboard and issue 13: progress on the busy page and a job's page, kept finished jobs
found by id (results shown only with ``show_results=True``, masked like arguments), expired
tombstones. Requests go through httpx's ASGI transport to the real app.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backburner import Backburner, Progress, current_job, job
from backburner.dashboard import dashboard
from backburner.dashboard._present import MASK, Presenter, progress_text
from backburner.testing import ManualClock

from ..jobs import Gate, echo

pytestmark = pytest.mark.anyio

AUTH = ("admin", "pw")


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def reporting(gate: Gate) -> None:
    current_job().set_progress(30, 100, "resizing token=abc123")
    await gate.hold()


async def test_the_busy_page_and_a_jobs_page_show_its_progress() -> None:
    gate = Gate()
    async with Backburner() as bg:
        running = bg.enqueue(reporting, gate)
        await gate.started.wait()
        async with _client(dashboard(bg, auth=AUTH)) as client:
            busy = (await client.get("/api/busy", auth=AUTH)).json()
            busy_page = (await client.get("/busy", auth=AUTH)).text
            shown = (await client.get(f"/api/jobs/{running.id}", auth=AUTH)).json()["job"]
            page = (await client.get(f"/jobs/{running.id}", auth=AUTH)).text
        gate.opened.set()
    [row] = busy["jobs"]
    assert row["progress"] == f"30 of 100 (30%) · resizing token={MASK}"  # masked like errors
    assert shown["progress"] == row["progress"]
    assert "<th>Progress</th>" in busy_page
    assert f"30 of 100 (30%) · resizing token={MASK}" in busy_page
    assert '<span class="progress" data-field="progress">30 of 100' in page
    assert "abc123" not in busy_page + page


def test_progress_reads_as_done_of_total_with_the_time_left() -> None:
    assert progress_text(Progress(30, 100, None, 0.0, 10.0)) == "30 of 100 (30%), about 7s left"
    assert progress_text(Progress(1, 100, None, 0.0, 0.01)) == "1 of 100 (1%), about 2h 45m left"
    assert progress_text(Progress(100, 100, None, 0.0, 10.0)) == "100 of 100 (100%)"
    assert progress_text(Progress(7.5, None, None, 0.0, None)) == "7.5 done"


async def fetch(user: str, password: str) -> dict[str, str]:
    return {"user": user, "echo": password, "token": "t0k3n-value"}


async def test_a_finished_job_it_never_showed_has_a_page_without_its_result_by_default() -> None:
    async with Backburner() as bg:
        done = bg.enqueue(fetch, "ada", "hunter22-secret")
        await done
        async with _client(dashboard(bg, auth=AUTH)) as client:
            response = await client.get(f"/jobs/{done.id}", auth=AUTH)
            shown = (await client.get(f"/api/jobs/{done.id}", auth=AUTH)).json()["job"]
    assert response.status_code == 200
    assert (shown["status"], shown["result"]) == ("succeeded", None)
    assert shown["args"] == ["user='ada'", f"password={MASK}"]
    assert "t0k3n-value" not in response.text
    assert "hunter22-secret" not in response.text


async def test_with_show_results_a_kept_result_is_masked_like_the_arguments() -> None:
    async with Backburner() as bg:
        done = bg.enqueue(fetch, "ada", "hunter22-secret")
        await done
        async with _client(dashboard(bg, auth=AUTH, show_results=True)) as client:
            shown = (await client.get(f"/api/jobs/{done.id}", auth=AUTH)).json()["job"]
            page = (await client.get(f"/jobs/{done.id}", auth=AUTH)).text
    # The password argument's value is masked where the result repeats it; a "token" key too.
    assert shown["result"] == f"{{'echo': '{MASK}', 'token': {MASK}, 'user': 'ada'}}"
    assert "hunter22-secret" not in page
    assert "t0k3n-value" not in page


@job(keep_result=False)
async def private() -> str:
    return "not-for-pages"


async def test_a_job_whose_result_is_not_kept_shows_its_status_only() -> None:
    async with Backburner() as bg:
        done = bg.enqueue(private)
        await done
        async with _client(dashboard(bg, auth=AUTH, show_results=True)) as client:
            shown = (await client.get(f"/api/jobs/{done.id}", auth=AUTH)).json()["job"]
            page = (await client.get(f"/jobs/{done.id}", auth=AUTH)).text
    assert (shown["status"], shown["result"]) == ("succeeded", None)
    assert shown["args"] == ["(not kept once the job ended)"]
    assert "not-for-pages" not in page


async def test_an_expired_jobs_page_says_expired_then_it_is_not_found() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, result_ttl=60) as bg:
        done = bg.enqueue(echo, "old")
        await done
        async with _client(dashboard(bg, auth=AUTH, show_results=True)) as client:
            clock.advance(60)
            shown = (await client.get(f"/api/jobs/{done.id}", auth=AUTH)).json()["job"]
            page = await client.get(f"/jobs/{done.id}", auth=AUTH)
            clock.advance(60)
            gone = await client.get(f"/jobs/{done.id}", auth=AUTH)
    assert (shown["status"], shown["result"], shown["name"]) == ("expired", None, "echo")
    assert page.status_code == 200
    assert 'class="status status-expired"' in page.text
    assert gone.status_code == 404
    assert "finished too long ago" not in gone.text
    assert "kept for result_ttl" in gone.text


def test_show_results_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="show_results must be a bool, got 1"):
        dashboard(auth=AUTH, show_results=1)  # type: ignore[arg-type]


async def test_a_snapshot_is_shown_with_every_field_a_job_is_shown_with() -> None:
    # The job page and its script read the same fields whichever way the job was found.
    async with Backburner() as bg:
        done = bg.enqueue(echo, "x")
        await done
        presenter = Presenter((), None)
        info = await bg.lookup(done.id)
    assert info is not None
    assert presenter.info(info).keys() == presenter.job(done, in_failures=False, detail=True).keys()
