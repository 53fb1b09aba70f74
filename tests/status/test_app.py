"""The status app in process: who may see a job, and the JSON of a job in every state.

Its streams, which need a real server, are in ``tests/e2e/test_status.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request

from backburner import Backburner, JobInfo, JobStatus, current_job
from backburner.status import StatusApp, status_app
from backburner.testing import ManualClock

from ..jobs import Gate, add, echo, fail, noop

pytestmark = pytest.mark.anyio

SECRET = "a-status-secret-of-more-than-32-bytes"


async def get(app: StatusApp, path: str, user: str | None = None) -> httpx.Response:
    """``GET path`` from ``app``, as ``user`` (the ``X-User`` header ``owner_only`` reads)."""
    transport = httpx.ASGITransport(app=app)
    headers = {} if user is None else {"X-User": user}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def bg(clock: ManualClock) -> AsyncIterator[Backburner]:
    async with Backburner(clock=clock, workers=2, result_ttl=60) as bg:
        yield bg


def owner_only(request: Request, info: JobInfo) -> bool:
    """The authorize of an app whose users say who they are in a header (tests only)."""
    return info.meta.get("user") == request.headers.get("x-user")


# Denied by default.


async def test_without_authorize_or_secret_every_request_is_refused_saying_how_to_allow(
    bg: Backburner,
) -> None:
    job = bg.enqueue(add, 1, 2)
    await bg.join()
    app = status_app(bg)

    answers = [await get(app, path) for path in (f"/{job.id}", f"/{job.id}/events", "/nope")]

    assert [answer.status_code for answer in answers] == [403, 403, 403]
    message = answers[0].json()["error"]
    assert "authorize=" in message
    assert "secret=" in message
    assert "3" not in answers[0].text  # the result is not shown


async def test_with_a_secret_only_an_unsigned_request_is_told_to_sign(bg: Backburner) -> None:
    job = bg.enqueue(add, 1, 2)
    await bg.join()

    answer = await get(status_app(bg, secret=SECRET), f"/{job.id}")

    assert answer.status_code == 403
    assert "not signed" in answer.json()["error"]


# authorize.


async def test_authorize_lets_the_owner_see_their_job_and_no_one_else(bg: Backburner) -> None:
    job = bg.options(meta={"user": "ada"}).enqueue(add, 1, 2)
    await bg.join()
    app = status_app(bg, authorize=owner_only)

    mine = await get(app, f"/{job.id}", user="ada")
    theirs = await get(app, f"/{job.id}", user="bob")
    events = await get(app, f"/{job.id}/events", user="bob")

    assert mine.status_code == 200
    assert mine.json()["result"] == 3
    assert (theirs.status_code, events.status_code) == (403, 403)
    assert "result" not in theirs.json()


async def test_an_async_authorize_is_awaited(bg: Backburner) -> None:
    seen: list[JobInfo] = []

    async def authorize(request: Request, info: JobInfo) -> bool:
        seen.append(info)
        return info.meta.get("user") == "ada"

    mine = bg.options(meta={"user": "ada"}).enqueue(noop)
    theirs = bg.options(meta={"user": "bob"}).enqueue(noop)
    await bg.join()
    app = status_app(bg, authorize=authorize)

    assert (await get(app, f"/{mine.id}")).status_code == 200
    assert (await get(app, f"/{theirs.id}")).status_code == 403
    assert [info.id for info in seen] == [mine.id, theirs.id]


@pytest.mark.parametrize("answer", ["yes", 1, None])
async def test_an_authorize_answer_that_is_not_a_bool_refuses_and_is_logged(
    bg: Backburner, answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    job = bg.enqueue(noop)
    await bg.join()

    def authorize(request: Request, info: JobInfo) -> Any:  # (what a careless hook returns)
        return answer

    refused = await get(status_app(bg, authorize=authorize), f"/{job.id}")

    assert refused.status_code == 403
    assert "not a bool" in caplog.text


async def test_an_authorize_that_raises_refuses_and_logs_its_error(
    bg: Backburner, caplog: pytest.LogCaptureFixture
) -> None:
    def authorize(request: Request, info: JobInfo) -> bool:
        raise KeyError("session")

    job = bg.enqueue(noop)
    await bg.join()

    with caplog.at_level(logging.ERROR, "backburner"):
        refused = await get(status_app(bg, authorize=authorize), f"/{job.id}")

    assert refused.status_code == 403
    assert "authorize failed" in caplog.text
    assert "KeyError" in caplog.text


async def test_an_unknown_id_is_404_once_authorize_can_be_asked(bg: Backburner) -> None:
    answer = await get(status_app(bg, authorize=owner_only), "/no-such-job")

    assert answer.status_code == 404
    assert "no-such-job" in answer.json()["error"]


async def test_an_id_of_this_process_with_thousands_of_digits_is_404(bg: Backburner) -> None:
    tag = bg.enqueue(noop).id.rpartition("-")[0]  # in every id this process hands out
    answer = await get(status_app(bg, authorize=owner_only), f"/{tag}-{'1' * 5000}")

    assert answer.status_code == 404


# Signed URLs.


async def test_a_signed_url_opens_its_job_and_its_events_without_authorize(
    bg: Backburner,
) -> None:
    job = bg.enqueue(add, 2, 2)
    await bg.join()
    app = status_app(bg, secret=SECRET)

    answer = await get(app, f"/{job.id}?{app.sign(job.id)}")

    assert answer.status_code == 200
    assert answer.json()["result"] == 4


async def test_a_signed_url_expires(bg: Backburner) -> None:
    clock = ManualClock()
    job = bg.enqueue(noop)
    await bg.join()
    app = status_app(bg, secret=SECRET, clock=clock)
    query = app.sign(job.id, expires_in=30)

    clock.advance(31)
    answer = await get(app, f"/{job.id}?{query}")

    assert answer.status_code == 403
    assert "expired" in answer.json()["error"]


async def test_a_tampered_signature_is_refused(bg: Backburner) -> None:
    job = bg.enqueue(noop)
    await bg.join()
    app = status_app(bg, secret=SECRET)
    query = app.sign(job.id)
    forged = query[:-2] + ("AA" if not query.endswith("AA") else "BB")

    answer = await get(app, f"/{job.id}?{forged}")

    assert answer.status_code == 403
    assert "does not match" in answer.json()["error"]


async def test_a_signature_for_another_job_is_refused(bg: Backburner) -> None:
    mine, theirs = bg.enqueue(noop), bg.enqueue(noop)
    await bg.join()
    app = status_app(bg, secret=SECRET)

    answer = await get(app, f"/{theirs.id}?{app.sign(mine.id)}")

    assert answer.status_code == 403


async def test_a_bad_signature_still_lets_authorize_decide(bg: Backburner) -> None:
    job = bg.options(meta={"user": "ada"}).enqueue(noop)
    await bg.join()
    app = status_app(bg, secret=SECRET, authorize=owner_only)
    forged = f"/{job.id}?expires=99999999999&sig=forged"

    assert (await get(app, forged, user="ada")).status_code == 200
    refused = await get(app, forged, user="bob")
    assert refused.status_code == 403
    assert "does not match" in refused.json()["error"]


async def test_signing_needs_a_secret_and_a_long_one() -> None:
    with pytest.raises(ValueError, match="no secret to sign with"):
        status_app(authorize=owner_only).sign("job-1")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        status_app(secret="hunter2")


# The JSON of every state.


async def read(bg: Backburner, job_id: str, *, show_errors: bool = False) -> httpx.Response:
    app = status_app(bg, authorize=lambda request, info: True, show_errors=show_errors)
    return await get(app, f"/{job_id}")


async def test_a_pending_job_says_its_place_in_line(bg: Backburner) -> None:
    gate = Gate()
    holders = [bg.enqueue(gate.hold) for _ in range(2)]
    waiting = [bg.enqueue(noop) for _ in range(3)]

    answer = await read(bg, waiting[2].id)

    body = answer.json()
    assert (answer.status_code, body["status"], body["position"]) == (200, "pending", 2)
    assert (body["finished"], body["started_at"]) == (False, None)
    assert int(answer.headers["retry-after"]) >= 1
    gate.opened.set()
    assert holders


async def test_a_scheduled_job_says_so(bg: Backburner) -> None:
    job = bg.enqueue_in(60, noop)

    body = (await read(bg, job.id)).json()

    assert (body["status"], body["position"], body["progress"]) == ("scheduled", None, None)


async def test_a_scheduled_or_retrying_job_says_to_ask_again_when_it_is_due(
    bg: Backburner, clock: ManualClock
) -> None:
    # Not every couple of seconds for an hour: accepted() counts from the due time, and so
    # does the status route.
    app = status_app(bg, authorize=lambda request, info: True, retry_bounds=(1, 3600))
    later = bg.enqueue_in(600, noop)
    retrying = bg.options(retries=1, backoff=300, jitter=0).enqueue(fail, "once")
    await anyio.wait_all_tasks_blocked()
    answers = [await get(app, f"/{job.id}") for job in (later, retrying)]
    assert [answer.json()["status"] for answer in answers] == ["scheduled", "retrying"]
    assert [answer.headers["retry-after"] for answer in answers] == ["600", "300"]
    clock.advance(100)
    answer = await get(app, f"/{later.id}")
    assert answer.headers["retry-after"] == "500"
    default = await get(status_app(bg, authorize=lambda request, info: True), f"/{later.id}")
    assert default.headers["retry-after"] == "60"  # the default bounds' longest


async def test_a_running_job_shows_its_progress_with_fraction_and_eta(bg: Backburner) -> None:
    gate = Gate()

    async def report() -> None:
        current_job().set_progress(1, 10, "one")
        current_job().set_progress(4, 10, "four")
        await gate.hold()

    job = bg.enqueue(report)
    await gate.started.wait()

    answer = await read(bg, job.id)

    body = answer.json()
    assert (body["status"], body["attempt"]) == ("running", 1)
    progress = body["progress"]
    assert (progress["done"], progress["total"], progress["message"]) == (4, 10, "four")
    assert progress["fraction"] == pytest.approx(0.4)
    assert progress["eta"] is None or progress["eta"] >= 0
    assert "retry-after" in answer.headers
    gate.opened.set()


async def test_a_retrying_job_shows_its_last_errors_type(bg: Backburner) -> None:
    job = bg.options(retries=2, backoff=30, jitter=0).enqueue(fail, "try again")
    await bg.join()

    answer = await read(bg, job.id)

    body = answer.json()
    assert (body["status"], body["attempt"]) == ("retrying", 1)
    assert body["error"] == "ValueError"  # its message may hold what a client is not to see
    assert "retry-after" in answer.headers
    shown = (await read(bg, job.id, show_errors=True)).json()
    assert shown["error"] == "ValueError: try again"


async def test_errors_are_shown_in_full_only_if_asked_for(bg: Backburner) -> None:
    secret = "password=hunter2 for db.internal:5432"
    job = bg.enqueue(fail, secret)
    await bg.join()

    hidden = await get(status_app(bg, authorize=lambda request, info: True), f"/{job.id}/events")
    shown = await get(
        status_app(bg, authorize=lambda request, info: True, show_errors=True), f"/{job.id}/events"
    )

    assert secret not in hidden.text
    assert '"error":"ValueError"' in hidden.text
    assert secret in shown.text
    with pytest.raises(TypeError, match="show_errors must be True or False, got 'yes'"):
        status_app(bg, show_errors="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        (lambda bg: bg.enqueue(fail, "boom"), "failed", "boom"),
        (lambda bg: bg.options(retries=1, backoff=0).enqueue(fail, "again"), "dead", "again"),
    ],
)
async def test_a_failed_job_shows_its_error_and_no_result(
    bg: Backburner, clock: ManualClock, make: Any, status: str, error: str
) -> None:
    job = make(bg)
    await bg.join()
    clock.advance(0)
    await bg.join()

    answer = await read(bg, job.id)

    body = answer.json()
    assert (answer.status_code, body["status"], body["finished"]) == (200, status, True)
    assert body["error"] == "ValueError"
    assert (await read(bg, job.id, show_errors=True)).json()["error"] == f"ValueError: {error}"
    assert "result" not in body
    assert "retry-after" not in answer.headers


async def test_a_cancelled_job_says_so(bg: Backburner) -> None:
    job = bg.enqueue_in(60, noop)
    job.cancel()

    body = (await read(bg, job.id)).json()

    assert (body["status"], body["finished"]) == ("cancelled", True)


async def test_a_json_result_is_given_as_json(bg: Backburner) -> None:
    job = bg.enqueue(add, 20, 22)
    await bg.join()

    body = (await read(bg, job.id)).json()

    assert (body["status"], body["result"], body["result_is_repr"]) == ("succeeded", 42, False)


async def test_a_result_json_cannot_carry_is_given_as_its_repr(bg: Backburner) -> None:
    async def odd() -> object:
        return {1, 2}

    job = bg.enqueue(odd)
    await bg.join()

    body = (await read(bg, job.id)).json()

    assert (body["result"], body["result_is_repr"]) == ("{1, 2}", True)


async def test_a_job_past_its_ttl_is_gone_410(bg: Backburner, clock: ManualClock) -> None:
    job = bg.enqueue(add, 1, 1)
    await bg.join()

    clock.advance(61)
    answer = await read(bg, job.id)

    assert answer.status_code == 410
    body = answer.json()
    assert (body["id"], body["status"], body["finished"]) == (job.id, "expired", True)
    assert "result" not in body


async def test_meta_is_for_authorize_and_never_shown(bg: Backburner) -> None:
    job = bg.options(meta={"user": "ada", "email": "ada@example.com"}).enqueue(noop)
    await bg.join()

    answer = await read(bg, job.id)

    assert "ada@example.com" not in answer.text
    assert "meta" not in answer.json()


async def test_answers_are_never_cached(bg: Backburner) -> None:
    job = bg.enqueue(noop)
    await bg.join()

    for answer in (await read(bg, job.id), await read(bg, "unknown")):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"] == "application/json"


async def test_only_get_of_a_job_and_its_events_is_served(bg: Backburner) -> None:
    app = status_app(bg, authorize=lambda request, info: True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/some-id")).status_code == 405
        assert (await client.get("/some-id/else")).status_code == 404


async def test_without_an_executor_the_answer_is_503() -> None:
    answer = await get(status_app(authorize=lambda request, info: True), "/some-id")

    assert answer.status_code == 503
    assert "No executor" in answer.json()["error"]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"authorize": "yes"}, TypeError),
        ({"secret": 42}, TypeError),
        ({"interval": 0}, ValueError),
        ({"heartbeat": "15"}, TypeError),
        ({"retry_bounds": (10, 1)}, ValueError),
    ],
)
def test_bad_settings_are_refused_where_they_are_written(
    settings: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        status_app(**settings)


def test_the_app_says_how_it_lets_requests_in() -> None:
    assert repr(status_app()) == "<backburner StatusApp denying everyone>"
    assert "signed" in repr(status_app(secret=SECRET))
    assert JobStatus.EXPIRED.finished


async def test_a_result_whose_repr_fails_is_named_by_its_type(bg: Backburner) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async def broken() -> Broken:
        return Broken()

    job = bg.enqueue(broken)
    await bg.join()

    body = (await read(bg, job.id)).json()

    assert body["result"] == "<Broken object: its repr failed>"


async def test_an_int_too_long_for_decimal_is_named_as_such(bg: Backburner) -> None:
    job = bg.enqueue(echo, 10**5000)
    await bg.join()

    body = (await read(bg, job.id)).json()

    assert body["result"] == "<int of 16,610 bits: too long to show>"
    assert body["result_is_repr"] is True


async def test_text_utf8_cannot_encode_is_sent_escaped_in_valid_json(bg: Backburner) -> None:
    # A lone surrogate (a file name read with surrogateescape) in an error's message or a
    # result: UTF-8 has no bytes for it, so the answer escapes it rather than failing.
    failed = bg.enqueue(fail, "no such file: caf\udce9.csv")
    returned = bg.enqueue(echo, "caf\udce9.csv")
    await bg.join()

    answer = await read(bg, failed.id, show_errors=True)
    events = await get(
        status_app(bg, authorize=lambda request, info: True, show_errors=True),
        f"/{failed.id}/events",
    )
    result = (await read(bg, returned.id)).json()

    assert answer.status_code == 200
    assert answer.content.decode("utf-8")  # valid UTF-8
    assert answer.json()["error"] == "ValueError: no such file: caf\udce9.csv"
    assert events.status_code == 200
    assert "\\udce9" in events.content.decode("utf-8")
    assert (result["result"], result["result_is_repr"]) == ("caf\udce9.csv", False)


async def test_head_of_a_running_jobs_events_answers_the_headers_and_ends(bg: Backburner) -> None:
    # A HEAD has no body: its answer must not stream (and hold its connection and a poll of
    # the job every interval) until the job ends, as a monitor's HEAD would have.
    gate = Gate()
    job = bg.enqueue(gate.hold)
    await gate.started.wait()
    app = status_app(bg, authorize=lambda request, info: True)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with anyio.fail_after(30):  # (a guard: it answered at once, or never before)
                answer = await client.head(f"/{job.id}/events")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.content == b""
    finally:
        gate.opened.set()
    await job
