"""The dashboard's parts in process: settings refused where written, auth rules that need a
client no real server here can be (another machine), the executor it finds, actions, metrics,
redaction. Requests go through httpx's ASGI transport to the real app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from backburner import (
    Backburner,
    BackburnerMiddleware,
    JobStatus,
    Periodic,
    QueueConfig,
    YieldToRequests,
)
from backburner import job as registered
from backburner.dashboard import BasicAuth, Dashboard, dashboard
from backburner.dashboard._metrics import escape_label
from backburner.dashboard._present import DEFAULT_REDACT, MASK, Presenter
from backburner.testing import ManualClock

from ..jobs import Gate, echo, fail, noop

pytestmark = pytest.mark.anyio

AUTH = ("admin", "pw")
SAME_ORIGIN = {
    "Origin": "http://test",
    "Sec-Fetch-Site": "same-origin",
    "Accept": "application/json",
}


def _client(app: Any, client: tuple[str, int] = ("127.0.0.1", 5000)) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def bg() -> AsyncIterator[Backburner]:
    async with Backburner(
        queues={"mail": QueueConfig(workers=1)}, periodic=[Periodic(noop, every=3600)]
    ) as executor:
        yield executor


# Settings.


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"auth": AUTH, "insecure_local": True}, ValueError, "either auth"),
        ({"auth": ("admin",)}, TypeError, "two strings"),
        ({"auth": 42}, TypeError, "auth must be"),
        ({"auth": ("", "pw")}, TypeError, "username must be a non-empty str"),
        ({"auth": ("a:b", "pw")}, ValueError, "cannot contain ':'"),
        ({"insecure_local": "yes"}, TypeError, "insecure_local must be a bool"),
        ({"auth": AUTH, "read_only": 1}, TypeError, "read_only must be a bool"),
        ({"auth": AUTH, "allowed_hosts": "example.com"}, TypeError, "allowed_hosts=\\['example"),
        ({"auth": AUTH, "redact": "password"}, TypeError, "list of names"),
        ({"auth": AUTH, "redact_hook": "x"}, TypeError, "redact_hook must be callable"),
        ({"auth": AUTH, "poll_interval": 0.1}, ValueError, "poll_interval must be from 1 to 60"),
        ({"auth": AUTH, "poll_interval": "2"}, TypeError, "poll_interval must be a number"),
        ({"auth": AUTH, "executor": "bg"}, TypeError, "executor must be a Backburner"),
    ],
)
def test_bad_settings_fail_where_they_are_written(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        dashboard(**settings)


def test_basic_auth_hides_its_password_in_its_repr() -> None:
    assert "pw" not in repr(BasicAuth("admin", "pw"))
    assert repr(dashboard(auth=AUTH)) == "<backburner Dashboard read-write>"
    assert isinstance(dashboard(auth=AUTH, read_only=True), Dashboard)


# Who gets in.


async def test_insecure_local_refuses_a_client_on_another_machine(
    bg: Backburner, caplog: pytest.LogCaptureFixture
) -> None:
    app = dashboard(bg, insecure_local=True)
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "insecure_local=True" in warning.getMessage()
    assert "reverse proxy" in warning.getMessage()
    dashboard(bg, auth=AUTH)
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    async with _client(app, client=("203.0.113.9", 4000)) as remote:
        response = await remote.get("/", headers={"Host": "localhost"})
        assert response.status_code == 403
        assert "serves only this machine" in response.text
    async with _client(app, client=("::1", 4000)) as local:
        assert (await local.get("/", headers={"Host": "[::1]:8000"})).status_code == 200


@pytest.mark.parametrize("answer", [True, False, "yes", None, 1])
async def test_an_auth_callable_must_answer_true_exactly(
    bg: Backburner, answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Answers that are not a bool, on purpose: the dashboard must refuse them.
    app = dashboard(bg, auth=lambda request: answer)  # type: ignore[arg-type,return-value]
    async with _client(app) as client:
        status = (await client.get("/api/session")).status_code
    assert status == (200 if answer is True else 403)
    if answer not in (True, False):
        assert "not a bool" in caplog.text


async def test_an_auth_callable_that_raises_refuses_and_logs(
    bg: Backburner, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Request) -> bool:
        raise RuntimeError("session store down")

    async with _client(dashboard(bg, auth=broken)) as client:
        assert (await client.get("/")).status_code == 403
    assert "auth callable failed" in caplog.text


# Which executor.


async def test_mounted_under_the_middleware_it_finds_the_apps_executor() -> None:
    app = Starlette(routes=[Mount("/bb", dashboard(auth=AUTH))])
    app.add_middleware(BackburnerMiddleware, workers=3)
    async with _client(app) as client:
        # No lifespan here, so the app's executor never started: shown as such, not owned.
        data = (await client.get("/bb/api/overview", auth=AUTH)).json()
        assert (data["running"], data["total"]["workers"]) == (False, 3)


async def test_with_no_executor_to_find_it_answers_503_saying_why() -> None:
    app = Starlette(routes=[Mount("/bb", dashboard(auth=AUTH))])
    async with _client(app) as client:
        response = await client.get("/bb/api/overview", auth=AUTH)
        assert response.status_code == 503
        assert "no backburner executor is running" in response.json()["error"]
        assert (await client.get("/bb/", auth=AUTH)).status_code == 503


async def test_an_explicit_executor_is_shown_and_never_started_or_stopped() -> None:
    bg = Backburner(workers=3)
    async with _client(dashboard(bg, auth=AUTH)) as client:
        data = (await client.get("/api/overview", auth=AUTH)).json()
        assert (data["running"], data["total"]["workers"]) == (False, 3)
        assert "not running" in (await client.get("/", auth=AUTH)).text
    assert not bg.running


# Actions, in process.


async def _act(client: httpx.AsyncClient, action: str, **fields: str) -> httpx.Response:
    return await client.post(f"/api/actions/{action}", data=fields, headers=SAME_ORIGIN, auth=AUTH)


async def test_actions_do_what_they_say_and_answer_json(bg: Backburner) -> None:
    async with _client(dashboard(bg, auth=AUTH)) as client:
        assert (await _act(client, "pause", queue="mail")).json()["message"] == "Queue mail paused."
        held = bg.options(queue="mail").enqueue(noop)
        assert (await _act(client, "cancel", job=held.id)).status_code == 200
        assert held.status is JobStatus.CANCELLED
        await _act(client, "resume", queue="mail")
        assert bg.paused() == frozenset()
        dead = [bg.enqueue(fail, str(n)) for n in range(3)]
        await bg.join()
        assert (await _act(client, "discard", job=dead[0].id)).status_code == 200
        response = await _act(client, "retry", job=dead[1].id)
        assert response.json()["message"] == f"Job {dead[1].id} sent to queue default again."
        await bg.join()
        assert (await _act(client, "discard-all")).json()["message"] == "2 jobs discarded."
        assert (await _act(client, "retry-all")).json()[
            "message"
        ] == "0 jobs sent to their queues again."
        triggered = await _act(client, "trigger", name="noop")
        assert "started as job" in triggered.json()["message"]


@pytest.mark.parametrize(
    ("action", "fields", "status", "message"),
    [
        ("retry", {"job": "nope"}, 404, "not in failures"),
        ("discard", {"job": "nope"}, 404, "not in the dead list"),
        ("cancel", {"job": "nope"}, 404, "no job nope"),
        ("pause", {"queue": "nope"}, 404, "no queue named 'nope'"),
        ("trigger", {"name": "nope"}, 404, "no periodic job named 'nope'"),
        ("pause", {}, 400, "needs the field"),
        ("explode", {}, 404, "No action named"),
    ],
)
async def test_a_bad_action_says_what_is_wrong(
    bg: Backburner, action: str, fields: dict[str, str], status: int, message: str
) -> None:
    async with _client(dashboard(bg, auth=AUTH)) as client:
        response = await _act(client, action, **fields)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_an_action_on_a_stopped_executor_is_a_conflict() -> None:
    bg = Backburner()
    async with bg:
        bg.enqueue(fail, "x")
        await bg.join()
    [job] = bg.failures()
    async with _client(dashboard(bg, auth=AUTH)) as client:
        response = await _act(client, "retry", job=job.id)
    assert response.status_code == 409
    assert "shut down" in response.json()["error"]


# Listings and the job page.


async def test_the_job_page_covers_each_place_a_job_can_be(bg: Backburner) -> None:
    gate = Gate()
    async with _client(dashboard(bg, auth=AUTH)) as client:
        running = bg.options(queue="mail").enqueue(gate.hold)
        pending = bg.options(queue="mail").enqueue(noop)
        scheduled = bg.enqueue_in(600, noop)
        await asyncio.sleep(0)
        for job, status in ((running, "running"), (pending, "pending"), (scheduled, "scheduled")):
            data = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
            assert data["status"] == status
        listed = (await client.get("/api/scheduled", auth=AUTH)).json()
        assert [job["id"] for job in listed["jobs"]] == [scheduled.id]
        assert listed["jobs"][0]["run_at"] == scheduled.run_at
        gate.opened.set()
        await bg.join()
        # Finished, but this dashboard showed it: its page still tells how it ended.
        data = (await client.get(f"/api/jobs/{pending.id}", auth=AUTH)).json()["job"]
        assert data["status"] == "succeeded"


# Metrics.


@pytest.mark.parametrize(
    ("value", "escaped"),
    [('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"), ("<é>", "<é>")],
)
def test_label_values_are_escaped_as_the_text_format_says(value: str, escaped: str) -> None:
    assert escape_label(value) == escaped


async def test_metrics_count_per_queue() -> None:
    async with Backburner(queues={'we"ird\\\nname': QueueConfig()}) as bg:
        bg.enqueue(noop)
        bg.enqueue(fail, "x")
        await bg.join()
        bg.pause('we"ird\\\nname')
        async with _client(dashboard(bg, auth=AUTH)) as client:
            response = await client.get("/metrics", auth=AUTH)
    text = response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'backburner_jobs_processed_total{queue="default"} 2' in text
    assert 'backburner_jobs_failed_total{queue="default"} 1' in text
    assert 'backburner_jobs_started_total{queue="default"} 2' in text
    assert 'backburner_queue_paused{queue="we\\"ird\\\\\\nname"} 1' in text
    assert "backburner_failures_kept 1" in text
    assert re.search(
        r'^backburner_job_wait_seconds_total\{queue="default"\} [0-9.e-]+$', text, re.M
    )


# Redaction.


def _job(bg: Backburner, fn: Any, *args: Any, **kwargs: Any) -> Any:
    return bg.options(queue="mail").enqueue(fn, *args, **kwargs)


async def send(to: str, password: str, *, settings: dict[str, Any] | None = None) -> None:
    pass


async def test_redaction_masks_by_name_position_and_nested_keys(bg: Backburner) -> None:
    bg.pause("mail")
    job = _job(bg, send, "ada@example.com", "hunter2", settings={"API_KEY": "k", "port": 25})
    shown = Presenter(("password", "api_key"), None).arguments(job)
    assert shown == [
        "to='ada@example.com'",
        f"password={MASK}",
        f"settings={{'API_KEY': {MASK}, 'port': 25}}",
    ]


async def test_a_failing_redact_hook_hides_the_arguments(
    bg: Backburner, caplog: pytest.LogCaptureFixture
) -> None:
    bg.pause("mail")
    job = _job(bg, send, "ada@example.com", "hunter2")

    def broken(job: Any, args: Any, kwargs: Any) -> Any:
        raise KeyError("oops")

    assert Presenter((), broken).arguments(job) == ["(hidden: the redact hook failed)"]
    assert "redact_hook failed" in caplog.text


async def test_long_and_unprintable_arguments_are_cut(bg: Backburner) -> None:
    class Loud:
        def __repr__(self) -> str:
            return "x" * 10_000

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    bg.pause("mail")
    job = _job(bg, noop, "y" * 10_000, Loud(), Broken(), list(range(1000)))
    shown = Presenter((), None).arguments(job)
    assert all(len(part) <= 300 for part in shown)
    assert shown[2].startswith("<Broken instance at 0x")
    assert shown[3].endswith("...]")


async def test_an_int_too_long_for_decimal_is_shown_as_such_not_as_a_failed_repr(
    bg: Backburner,
) -> None:
    bg.pause("mail")
    job = _job(bg, noop, 10**5000, [7**6000])
    shown = Presenter((), None).arguments(job)
    assert shown == [
        "<int of 16,610 bits: too long to show>",
        "[<int of 16,845 bits: too long to show>]",
    ]


def test_mounted_in_fastapi_it_shows_the_running_executor_of_the_app() -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    app = FastAPI()
    app.add_middleware(BackburnerMiddleware, workers=5)
    app.mount("/backburner", dashboard(auth=AUTH))
    with TestClient(app) as client:  # runs the lifespan: the app's executor starts
        data = client.get("/backburner/api/overview", auth=AUTH).json()
        assert (data["running"], data["total"]["workers"]) == (True, 5)
        page = client.get("/backburner/busy", auth=AUTH)
        assert page.status_code == 200
        assert 'href="/backburner/static/dashboard.css"' in page.text


# Parameters, for any text a client may send.


def _request(query: bytes) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": []}
    )


@given(st.text(max_size=40))
def test_any_query_value_is_a_number_in_range_or_a_bad_parameter(raw: str) -> None:
    from urllib.parse import quote

    from backburner.dashboard._params import LIMIT, POLL, BadParameter, read_float, read_int

    request = _request(b"v=" + quote(raw).encode())
    for read, bounds in ((read_int, LIMIT), (read_float, POLL)):
        try:
            value: float | None = read(request, "v", bounds)
        except BadParameter as exc:
            value, message = None, str(exc)
        if value is None:
            assert message.startswith("v must be")
        else:
            assert bounds.low <= value <= bounds.high


async def test_long_errors_and_tracebacks_are_cut_keeping_the_frames_and_the_end(
    bg: Backburner,
) -> None:
    async def recursing() -> None:
        raise ValueError("x" * 30_000 + " the end")

    job = bg.enqueue(recursing)
    await bg.join()
    shown = Presenter((), None).job(job, in_failures=True, detail=True)
    assert len(shown["error"]) == 1000
    assert shown["error"].startswith("ValueError: xxx")
    # Cut as the failure's log record is: the message in its middle, the frames all there.
    assert len(shown["traceback"]) <= 20_000
    assert "in recursing" in shown["traceback"]
    assert "more characters ...]" in shown["traceback"]
    assert shown["traceback"].rstrip().endswith("the end")


# Strings UTF-8 cannot encode.

CAFE = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # a lone surrogate, \udce9


async def read(path: str) -> None:
    raise ValueError(f"cannot read {path}")


async def test_lone_surrogates_anywhere_are_shown_escaped_never_a_500() -> None:
    queue = f"files-{CAFE}"
    async with Backburner(
        queues={queue: QueueConfig()}, periodic=[Periodic(noop, every=3600, name=CAFE)]
    ) as bg:
        job = bg.options(queue=queue, unique=CAFE).enqueue(read, CAFE)
        await bg.join()
        assert job.status is JobStatus.FAILED
        async with _client(dashboard(bg, auth=AUTH)) as client:
            for path in ("/api/dead", f"/api/jobs/{job.id}", "/api/overview", "/api/periodic"):
                response = await client.get(path, auth=AUTH)
                assert response.status_code == 200, path
                assert "caf\\\\udce9.txt" in response.text, path  # JSON escapes the backslash
            detail = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
            assert detail["error"] == "ValueError: cannot read caf\\udce9.txt"
            assert detail["unique_key"] == "caf\\udce9.txt"
            assert detail["queue"] == "files-caf\\udce9.txt"
            assert "caf\\udce9.txt" in detail["traceback"]
            for path in ("/dead", f"/jobs/{job.id}", "/", "/periodic"):
                response = await client.get(path, auth=AUTH)
                assert response.status_code == 200, path
                assert "caf\\udce9.txt" in response.text, path
            metrics = await client.get("/metrics", auth=AUTH)
            assert 'queue="files-caf\\\\udce9.txt"' in metrics.text  # a label escapes "\\"


# Redaction through containers, pairs, dataclasses, URLs and error text.


@dataclasses.dataclass
class Creds:
    user: str
    password: str


class Pair(NamedTuple):
    name: str
    api_key: str


@pytest.mark.parametrize(
    ("argument", "shown"),
    [
        ([{"password": "hunter2"}], f"[{{'password': {MASK}}}]"),
        (("token", "hunter2"), f"('token', {MASK})"),
        ([("Authorization", "Bearer hunter2")], f"[('Authorization', {MASK})]"),
        (["x-api-key", "hunter2"], f"['x-api-key', {MASK}]"),
        ({("a", "b"), ("secret", "hunter2")}, f"('secret', {MASK})"),
        (Creds("ada", "hunter2"), f"Creds(user='ada', password={MASK})"),
        (Pair("ada", "hunter2"), f"Pair(name='ada', api_key={MASK})"),
        ({b"password": "hunter2"}, f"{{b'password': {MASK}}}"),
        ("postgres://ada:hunter2@db/app", f"'postgres://ada:{MASK}@db/app'"),
        ([[{"cookie": "hunter2"}]], f"[[{{'cookie': {MASK}}}]]"),
    ],
)
async def test_secrets_are_masked_inside_containers_pairs_and_records(
    bg: Backburner, argument: Any, shown: str
) -> None:
    bg.pause("mail")
    job = _job(bg, noop, argument)
    [text] = Presenter(DEFAULT_REDACT, None).arguments(job)
    assert "hunter2" not in text
    assert shown in text


async def login(user: str, password: str) -> None:
    raise PermissionError(f"login refused for {user} with {password}")


async def test_masked_values_and_redact_text_hide_secrets_in_errors_and_unique_keys() -> None:
    def scrub(job: Any, text: str) -> str:
        return text.replace("ada", "[user]")

    async with Backburner() as bg:
        job = bg.options(unique=lambda user, password: f"login:{password}").enqueue(
            login, "ada", "hunter22"
        )
        await bg.join()
        for redact_text, user in ((None, "ada"), (scrub, "[user]")):
            async with _client(dashboard(bg, auth=AUTH, redact_text=redact_text)) as client:
                data = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
                page = (await client.get(f"/jobs/{job.id}", auth=AUTH)).text
            assert "hunter22" not in str(data)
            assert "hunter22" not in page
            assert data["error"] == f"PermissionError: login refused for {user} with {MASK}"
            assert data["unique_key"] == f"login:{MASK}"
            assert f"login refused for {user} with {MASK}" in data["traceback"]


@registered(log_args=False)
async def charge_card(card_number: str, amount: int) -> None:
    raise ValueError(f"card {card_number} declined")


async def test_a_job_declared_log_args_false_shows_no_argument_in_the_dashboard() -> None:
    # Declared to keep its arguments (secrets, personal data) out of backburner's logs: the
    # dashboard, whatever the names, masks them too, and their text where it shows elsewhere.
    async with Backburner() as bg:
        job = bg.enqueue(charge_card, "4111111111111111", 1200)
        await bg.join()
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
            page = (await client.get(f"/jobs/{job.id}", auth=AUTH)).text
    assert "4111111111111111" not in str(data) + page
    assert data["args"] == [f"card_number={MASK}", f"amount={MASK}"]
    assert data["error"] == f"ValueError: card {MASK} declined"


async def test_a_failing_redact_text_hides_the_text_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(job: Any, text: str) -> str:
        raise KeyError("oops")

    async with Backburner() as bg:
        job = bg.enqueue(login, "ada", "pw")
        await bg.join()
        data = Presenter((), None, broken).job(job, in_failures=True, detail=True)
    assert data["error"] == data["traceback"] == "(hidden: the redact_text hook failed)"
    assert "redact_text failed" in caplog.text
    with pytest.raises(TypeError, match="redact_text must be callable"):
        dashboard(auth=AUTH, redact_text="no")  # type: ignore[arg-type]


async def test_big_bytes_are_cut_before_their_repr_is_made(
    bg: Backburner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backburner.dashboard import _present

    given: list[int] = []
    real = _present._builtin_repr

    def watched(value: Any) -> str:
        given.append(len(value))
        return real(value)

    monkeypatch.setattr(_present, "_builtin_repr", watched)
    bg.pause("mail")
    big = b"\x00" * 10_000_000
    job = _job(bg, noop, big, bytearray(big), memoryview(big), [big], b"short")
    shown = Presenter((), None).arguments(job)
    assert shown[0].endswith("...' (10000000 bytes)")
    assert shown[1].startswith("bytearray(b'\\x00")
    assert shown[1].endswith("(10000000 bytes))")
    assert shown[2] == "<memoryview of 10000000 bytes>"
    assert shown[3].endswith("(10000000 bytes)]")
    assert shown[4] == "b'short'"
    assert given, "bytes went through the sliced path"
    assert max(given) <= 200  # never the whole 10 MB


# Small things the pages must get right.


@pytest.mark.parametrize(
    ("query", "poll"),
    [
        ("", "10.0"),
        ("?poll=", "10.0"),
        ("?poll=%20", "10.0"),
        ("?poll=0", "0.0"),
        ("?poll=0.0", "0.0"),
        ("?poll=0.2", "1"),
        ("?poll=5", "5.0"),
        ("?poll=999", "60"),
    ],
)
async def test_the_poll_parameter_defaults_stops_and_clamps(
    bg: Backburner, query: str, poll: str
) -> None:
    async with _client(dashboard(bg, auth=AUTH, poll_interval=10)) as client:
        page = await client.get(f"/{query}", auth=AUTH)
    assert f'data-poll="{poll}' in page.text


async def test_history_is_keyed_by_whole_queue_names_and_cut_by_the_executors_clock() -> None:
    long = "q" * 250
    clock = ManualClock(start=1_000_000.0)
    async with Backburner(
        clock=clock, queues={"default": QueueConfig(), long: QueueConfig()}
    ) as bg:
        bg.options(queue=long).enqueue(noop)
        await bg.join()
        clock.advance(bg.history.interval)
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get("/api/overview", auth=AUTH)).json()
    assert [queue["name"] in data["history"] for queue in data["queues"]] == [True, True]
    assert data["history"][long], "samples stamped with the executor's clock are kept"
    assert sum(sample["started"] for sample in data["history"][long]) == 1


async def test_retry_all_that_stops_part_way_says_how_many_were_sent() -> None:
    async with Backburner(queues={"default": QueueConfig(workers=1, max_pending=1)}) as bg:
        failed = []
        for i in range(3):
            failed.append(bg.enqueue(fail, str(i)))
            await bg.join()
        bg.pause("default")  # two fit (one for the idle worker, one waiting); the third not
        async with _client(dashboard(bg, auth=AUTH)) as client:
            token = (await client.get("/api/session", auth=AUTH)).json()["csrf_token"]
            response = await client.post(
                "/api/actions/retry-all",
                data={"csrf_token": token},
                headers=SAME_ORIGIN,
                auth=AUTH,
            )
        assert response.status_code == 409
        message = response.json()["error"]
        assert message.startswith(
            f"2 of 3 jobs sent to their queues again, then job {failed[2].id}"
        )
        assert "still in the dead list" in message
        assert [job.id for job in bg.failures()] == [failed[2].id]
        bg.resume("default")
        await bg.join()


# The job page: attempts, arguments by name, the return value, tracebacks, unknown ids.


async def _shown_then_finished(
    bg: Backburner, client: httpx.AsyncClient, fn: Any, *args: Any, **kwargs: Any
) -> Any:
    """A job the dashboard showed while it waited (so its page outlives it), run to its end."""
    bg.pause("mail")
    job = _job(bg, fn, *args, **kwargs)
    assert (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).status_code == 200
    bg.resume("mail")
    await bg.join()
    return job


async def test_a_manual_retry_past_the_automatic_attempts_says_so_never_4_of_3() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        job = bg.options(retries=2, backoff=10, jitter=0).enqueue(fail, "down")
        for wait in (10, 20, 0):
            await bg.join()
            clock.advance(wait)
        assert (job.status, job.attempt) == (JobStatus.DEAD, 3)
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
            assert data["attempt_text"] == "3 of 3"
            bg.retry(job)
            await bg.join()
            assert (job.status, job.attempt) == (JobStatus.DEAD, 4)  # no automatic retry
            data = (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]
            paths = (f"/jobs/{job.id}", "/dead")
            pages = [(await client.get(path, auth=AUTH)).text for path in paths]
    told = "4 (manual retry; 3 allowed automatically)"
    assert data["attempt_text"] == told
    for page in pages:
        assert told in page
        assert "4 of 3" not in page


@registered(name="tests.dashboard.refused")
async def refused(reason: str) -> None:
    raise PermissionError(reason)


async def test_with_a_journal_an_attempt_past_the_allowed_ones_may_be_a_rerun_after_a_crash(
    tmp_path: Path,
) -> None:
    async with Backburner(journal=tmp_path / "jobs.db") as bg:
        failed = bg.enqueue(refused, "no")
        await bg.join()
        bg.retry(failed.id)
        await bg.join()
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get(f"/api/jobs/{failed.id}", auth=AUTH)).json()["job"]
    assert data["attempt_text"] == (
        "2 (manual retry or a run again after a crash; 1 allowed automatically)"
    )


async def test_a_journal_whose_file_went_missing_leaves_the_dashboard_up_and_the_path_free(
    tmp_path: Path,
) -> None:
    """The journal's file deleted under a running app (its writer says so at ERROR): the
    pages still show this process, and looking at them creates no empty file at the path,
    which would refuse the next start."""
    path = tmp_path / "jobs.db"
    async with Backburner(journal=path) as bg:
        for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        async with _client(dashboard(bg, auth=AUTH)) as client:
            for url in ("/api/overview", "/", "/dead", "/api/dead"):
                assert (await client.get(url, auth=AUTH)).status_code == 200, url
            assert (await client.get("/api/jobs/nope", auth=AUTH)).status_code == 404
            retried = await client.post(
                "/api/actions/retry", data={"job": "nope"}, auth=AUTH, headers=SAME_ORIGIN
            )
            assert retried.status_code == 503
            assert "cannot be read" in retried.json()["error"]
        assert not path.exists()
    async with Backburner(journal=path):  # the next start begins a new journal
        pass


async def test_a_job_without_an_error_has_no_traceback_section(bg: Backburner) -> None:
    async with _client(dashboard(bg, auth=AUTH)) as client:
        succeeded = await _shown_then_finished(bg, client, noop)
        failed = bg.enqueue(fail, "boom")
        await bg.join()
        quiet = (await client.get(f"/jobs/{succeeded.id}", auth=AUTH)).text
        loud = (await client.get(f"/jobs/{failed.id}", auth=AUTH)).text
    assert "No error." not in quiet
    assert '<section data-show-if="traceback" hidden>' in quiet  # there for a live update only
    assert '<dt data-show-if="error" hidden>' in quiet
    assert '<section data-show-if="traceback">' in loud
    assert "ValueError: boom" in loud


async def report(to: str, password: str, /, *pins: str, cc: str = "", **headers: str) -> str:
    return f"sent to {to}"


async def test_arguments_are_shown_by_parameter_name_and_masked_by_it(bg: Backburner) -> None:
    bg.pause("mail")
    job = _job(bg, report, "ada@example.com", "hunter22", "1234", "5678", cc="bob", trace="t1")
    assert Presenter(DEFAULT_REDACT, None).arguments(job) == [
        "to='ada@example.com'",
        f"password={MASK}",  # positional, masked by the name it binds to
        MASK,  # *pins: each one masked by the name they go to, shown without it
        MASK,
        "cc='bob'",
        "trace='t1'",
    ]


async def test_arguments_that_no_longer_bind_are_shown_by_position(bg: Backburner) -> None:
    def drop_password(job: Any, args: Any, kwargs: Any) -> Any:
        return args[:1], kwargs  # send(to) alone does not bind: password is missing

    bg.pause("mail")
    job = _job(bg, send, "ada@example.com", "hunter2")
    assert Presenter(DEFAULT_REDACT, drop_password).arguments(job) == ["'ada@example.com'"]


async def lookup(user: str) -> dict[str, Any]:
    return {"user": user, "token": "t0k3n-hunter22", "rows": list(range(100))}


async def issue_token(user: str) -> str:
    return "t0k3n-hunter22"


async def test_a_succeeded_jobs_return_value_is_shown_redacted_and_cut(bg: Backburner) -> None:
    async with _client(dashboard(bg, auth=AUTH, show_results=True)) as client:
        found = await _shown_then_finished(bg, client, lookup, "ada")
        token = await _shown_then_finished(bg, client, issue_token, "ada")
        big = await _shown_then_finished(bg, client, echo, "x" * 100_000)
        nothing = await _shown_then_finished(bg, client, noop)
        results = [
            (await client.get(f"/api/jobs/{job.id}", auth=AUTH)).json()["job"]["result"]
            for job in (found, token, big, nothing)
        ]
        page = (await client.get(f"/jobs/{found.id}", auth=AUTH)).text
    # (reprlib shows a dict's keys sorted)
    rows = "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert results[0] == f"{{'rows': {rows}, 'token': {MASK}, 'user': 'ada'}}"
    assert results[1] == MASK  # a function named for a secret returns one
    assert results[2].startswith("'xxx")
    assert len(results[2]) <= 300
    assert results[3] == "None"  # returned None: said, not hidden
    assert "t0k3n-hunter22" not in page
    assert '<dt data-show-if="result">Returned</dt>' in page
    assert "[0, 1, 2, 3, 4, 5, 6, 7, ...]" in page


async def test_no_return_value_for_a_job_that_did_not_succeed_or_with_results_hidden(
    bg: Backburner,
) -> None:
    failed = bg.enqueue(fail, "boom")
    bg.pause("mail")
    waiting = _job(bg, echo, 1)
    await bg.join()
    for unfinished in (failed, waiting):
        shown = Presenter((), None).job(unfinished, in_failures=False, detail=True)
        assert shown["result"] is None
    bg.resume("mail")
    await bg.join()
    showing = Presenter((), None, show_results=True)
    assert showing.job(waiting, in_failures=False, detail=True)["result"] == "1"
    hidden = Presenter((), None)  # the default
    assert hidden.job(waiting, in_failures=False, detail=True)["result"] is None


async def test_an_unknown_jobs_page_is_a_404_with_the_pages_navigation(bg: Backburner) -> None:
    async with _client(dashboard(bg, auth=AUTH)) as client:
        page = await client.get("/jobs/nope-1", auth=AUTH)
        api = await client.get("/api/jobs/nope-1", auth=AUTH)
    assert page.status_code == api.status_code == 404
    assert "No job nope-1 here" in page.text
    assert "<nav>" in page.text
    for path in ("/busy", "/pending", "/scheduled", "/retries", "/dead", "/periodic"):
        assert f'<a href="{path}"' in page.text
    assert 'data-page=""' in page.text  # no page's script polls here
    assert "No job nope-1 here" in api.json()["error"]


async def test_the_overview_shows_yielding_to_requests_when_it_is_on() -> None:
    clock = ManualClock()
    config = YieldToRequests(target_lag=0.01)
    async with Backburner(workers=4, clock=clock, yield_to_requests=config) as bg:
        bg.yielding.request_arrived()
        bg.yielding.lag(0.05)  # five times the target: the next decision halves the workers
        clock.advance(bg.yielding.interval)
        async with _client(dashboard(bg, auth=AUTH)) as client:
            data = (await client.get("/api/overview", auth=AUTH)).json()
            page = (await client.get("/", auth=AUTH)).text
    yielding = data["yielding"]
    assert (yielding["state"], yielding["effective_workers"]) == ("yielding", {"default": 2})
    assert yielding["summary"].startswith("yielding: pressure 5.00 times the target (loop lag 50")
    assert "workers allowed now: default 2" in yielding["summary"]
    assert 'data-yielding-state="yielding"' in page
    assert "Yielding to requests" in page


async def test_the_overview_says_nothing_of_yielding_when_it_is_off(bg: Backburner) -> None:
    async with _client(dashboard(bg, auth=AUTH)) as client:
        data = (await client.get("/api/overview", auth=AUTH)).json()
        page = (await client.get("/", auth=AUTH)).text
    assert data["yielding"] is None
    assert "Yielding to requests" not in page
