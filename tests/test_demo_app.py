"""The demo app, served for real: uvicorn on a free port, real SMTP mail into its own catcher.

Most tests serve ``demo_app.Demo`` with ``uvicorn.Server`` in a thread of this process (so a
test can look at the mailbox after shutdown); those of the jobs that wait (the digest, the
reminder, the retries) serve it on the test's own event loop with a ``ManualClock``, which the
test advances; one runs ``python -m demo_app`` as a subprocess. Waiting is done by the demo's
own long-polls (``/inbox.json?wait=``, ``/stats?wait=``), never by sleeping.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib
import anyio
import httpx
import pytest
import uvicorn

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

from backburner import JobStatus
from backburner.testing import ManualClock
from demo_app import Demo
from demo_app.__main__ import parse_args, usable_port
from demo_app.digest import DIGEST_TO

from .browsers import launch
from .processes import ROOT, ChildProcess, free_port

pytestmark = pytest.mark.anyio

#: The pretend mail service's delay: long enough that inline mode is plainly slower.
MAIL_DELAY = 0.1
FIRST_TEN = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
#: One TLS context for every client (unused over http, but httpx would load one per client).
TLS = ssl.create_default_context()


@pytest.fixture
def anyio_backend() -> str:
    """The server runs its own loop in its own thread; the client needs only asyncio."""
    return "asyncio"


class _Server(uvicorn.Server):
    """uvicorn's server, with an event set once its startup has ended, well or not."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_ended = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_ended.set()


class _Complaints(logging.Handler):
    """Keeps every warning and error logged by the thread of a server's event loop.

    Only that thread's: the module's server runs in a thread while other tests serve demos of
    their own, whose records are theirs to judge. (Everything a demo does, its sync jobs'
    failures and its mail catcher included, is logged on its loop's thread.)
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.thread: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)


#: Where a failed job, an unfinished shutdown or an app exception would be logged.
WATCHED_LOGGERS = ("asyncio", "backburner", "demo_app", "uvicorn.error", "mail.log")

#: What the broken address's welcome job logs: a warning per retry, an error when it dies.
WELCOME_FAILS = r"send_welcome\(.*\) queue='mail'.* failed .*SMTPRecipientsRefused"
#: What a shutdown logs when it drops the reminders still scheduled.
REMINDERS_DROPPED = r"unfinished jobs .*\n(\s+scheduled\s+\S+ send_reminder\(.*\n?)+$"


@contextlib.contextmanager
def _no_complaints(allowed: Sequence[str]) -> Iterator[_Complaints]:
    """Fail if the thread that the caller sets on the handler yielded logged a warning or an
    error in the block, but what ``allowed`` (regular expressions) matches."""
    complaints = _Complaints()
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).addHandler(complaints)
    try:
        yield complaints
    finally:
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).removeHandler(complaints)
    unexpected = [record.getMessage() for record in complaints.records]
    unexpected = [m for m in unexpected if not any(re.search(p, m) for p in allowed)]
    assert not unexpected, unexpected


def _server(demo: Demo) -> _Server:
    config = uvicorn.Config(
        demo.app,
        host="127.0.0.1",
        port=0,
        loop="asyncio",
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    return _Server(config)


def _url(server: _Server) -> str:
    assert server.started, "the server's startup failed (see the log)"
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serve(demo: Demo, allowed: Sequence[str] = ()) -> Iterator[str]:
    """Serve ``demo`` on a free port of 127.0.0.1 until the block ends; yield its base URL.

    Fails if anything logged a warning or an error meanwhile (startup and shutdown included),
    but the messages that the regular expressions ``allowed`` match.
    """
    with _no_complaints(allowed) as complaints:
        server = _server(demo)
        thread = threading.Thread(target=server.run, name="demo-server")
        thread.start()
        complaints.thread = thread.ident  # (the server logs nothing before its loop runs)
        try:
            assert server.startup_ended.wait(10), "the server did not start within 10 s"
            yield _url(server)
        finally:
            server.should_exit = True
            thread.join(15)
        assert not thread.is_alive(), "the server did not shut down within 15 s"


@contextlib.asynccontextmanager
async def serve_here(demo: Demo, allowed: Sequence[str] = ()) -> AsyncIterator[str]:
    """``serve``, but on the test's own event loop: where a ``ManualClock`` is advanced."""
    with _no_complaints(allowed) as complaints:
        complaints.thread = threading.get_ident()
        server = _server(demo)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            started = await anyio.to_thread.run_sync(server.startup_ended.wait, 10)
            assert started, "the server did not start within 10 s"
            try:
                yield _url(server)
            finally:
                server.should_exit = True  # and the task group waits for it to end


def quiet_demo(**settings: Any) -> Demo:
    """A demo without the jobs that come on their own (the digest, the reminders), so that
    counts and mailboxes change only by what a test does; ``settings`` override."""
    return Demo(
        **{
            "mail_delay": MAIL_DELAY,
            "shutdown_timeout": 5,
            "digest_every": None,
            "reminder_delay": None,
            "fib_step": 0.001,
            **settings,
        }
    )


@dataclass(frozen=True)
class Served:
    demo: Demo
    url: str


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One demo server for the module: tests use addresses of their own and relative counts."""
    demo = quiet_demo()
    with serve(demo) as url:
        yield Served(demo, url)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=15, verify=TLS) as client:
        yield client


@pytest.fixture
def address() -> str:
    """An address no other test mails to."""
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def idle_stats(client: httpx.AsyncClient) -> dict[str, Any]:
    """The executor's counters once no job is pending or running (the server waits for it)."""
    response = await client.get("/stats", params={"wait": 10})
    assert response.status_code == 200
    stats: dict[str, Any] = response.json()
    assert stats["total"]["busy"] == stats["total"]["pending"] == 0, "not idle within 10 s"
    return stats


async def mail_to(client: httpx.AsyncClient, address: str, wait: float = 10) -> list[Any]:
    """The caught messages to ``address``, newest first, waiting up to ``wait`` for one."""
    response = await client.get("/inbox.json", params={"to": address, "wait": wait})
    assert response.status_code == 200
    messages: list[Any] = response.json()["messages"]
    return messages


def server_time_ms(response: httpx.Response) -> tuple[float, str]:
    """The handler's own time and mode, from the ``Server-Timing`` header."""
    match = re.fullmatch(r'app;dur=([\d.]+);desc="(\w+)"', response.headers["server-timing"])
    assert match, response.headers["server-timing"]
    return float(match[1]), match[2]


def numbers_in(body: str) -> list[int]:
    return [int(line) for line in body.splitlines() if line.isdecimal()]


# Sign-up.


async def test_signup_redirects_at_once_and_the_welcome_mail_follows(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post("/signup", data={"email": address})

    assert response.status_code == 303
    assert re.fullmatch(r"/welcome\?r=\d+", response.headers["location"])
    elapsed, mode = server_time_ms(response)
    assert mode == "background"
    assert elapsed < MAIL_DELAY * 1000  # the mail service's delay was not waited for
    [mail] = await mail_to(client, address)
    assert mail["subject"] == "Welcome to the backburner demo"
    assert mail["to"] == [address]


async def test_welcome_page_names_the_address_and_the_mode(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post("/signup", data={"email": address})

    page = await client.get(response.headers["location"])

    assert page.status_code == 200
    assert f"Welcome, {address}!" in page.text
    assert "background job" in page.text


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "please give an email address"),
        ("not-an-address", "is not an email address"),
        ("<script>@example.com", "is not an email address"),
        ("ada@example.com\r\nBcc: eve@example.com", "is not an email address"),
    ],
)
async def test_signup_refuses_a_bad_address_with_a_reason(
    client: httpx.AsyncClient, email: str, reason: str
) -> None:
    response = await client.post("/signup", data={"email": email})

    assert response.status_code == 400
    assert reason in response.text
    assert "<script>" not in response.text  # the address is shown escaped


# FibTastic.


async def test_fibtastic_mails_the_first_n_fibonacci_numbers(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post("/fibtastic", data={"email": address, "n": "10"})

    assert response.status_code == 303
    assert response.headers["location"].startswith("/fibtastic/sent?r=")
    [mail] = await mail_to(client, address)
    assert mail["subject"] == "Your 10 Fibonacci numbers"
    assert numbers_in(mail["body"]) == FIRST_TEN


@pytest.mark.parametrize("n", ["", "abc", "0", "-3", "501", "1e3", "10.5", "\u0663"])
async def test_fibtastic_refuses_a_bad_n_with_a_reason_and_enqueues_nothing(
    client: httpx.AsyncClient, address: str, n: str
) -> None:
    before = await idle_stats(client)

    response = await client.post("/fibtastic", data={"email": address, "n": n})

    assert response.status_code == 400
    assert "N must be a whole number from 1 to 500" in response.text
    assert (await idle_stats(client))["total"]["processed"] == before["total"]["processed"]


# Inline mode.


@pytest.mark.parametrize("where", ["form", "query"])
async def test_inline_signup_mails_before_the_response_returns(
    client: httpx.AsyncClient, address: str, where: str
) -> None:
    before = await idle_stats(client)
    if where == "form":
        response = await client.post("/signup", data={"email": address, "mode": "inline"})
    else:
        response = await client.post("/signup?mode=inline", data={"email": address})

    assert response.status_code == 303
    elapsed, mode = server_time_ms(response)
    assert mode == "inline"
    assert elapsed >= MAIL_DELAY * 1000
    [mail] = await mail_to(client, address, wait=0)  # already there: no waiting
    assert mail["subject"] == "Welcome to the backburner demo"
    assert (await idle_stats(client))["total"]["processed"] == before["total"]["processed"]


async def test_inline_fibtastic_mails_before_the_response_returns(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post("/fibtastic", data={"email": address, "n": "10", "mode": "inline"})

    assert response.status_code == 303
    [mail] = await mail_to(client, address, wait=0)
    assert numbers_in(mail["body"]) == FIRST_TEN


async def test_unknown_mode_is_refused(client: httpx.AsyncClient, address: str) -> None:
    response = await client.post("/signup", data={"email": address, "mode": "later"})

    assert response.status_code == 400
    assert "mode must be" in response.text


async def test_home_page_shows_both_modes_response_times_side_by_side(
    client: httpx.AsyncClient,
) -> None:
    in_background = await client.post("/signup", data={"email": "bg@example.com"})
    inline = await client.post("/signup", data={"email": "in@example.com", "mode": "inline"})

    page = (await client.get("/")).text

    boxes = re.findall(r"<div class=mode>(\w+)<strong>([\d,.]+) ms</strong>", page)
    shown = {mode: float(ms.replace(",", "")) for mode, ms in boxes}
    assert shown.keys() == {"background", "inline"}
    for response in (in_background, inline):  # each box shows its mode's latest request
        elapsed, mode = server_time_ms(response)
        assert abs(shown[mode] - elapsed) <= 0.1  # as timed, to the 0.1 ms shown
    assert shown["background"] < MAIL_DELAY * 1000 <= shown["inline"]


# Stats and inbox.


async def test_stats_count_the_jobs_processed_per_queue(
    client: httpx.AsyncClient, address: str
) -> None:
    before = await idle_stats(client)
    await client.post("/signup", data={"email": address})
    await client.post("/fibtastic", data={"email": address, "n": "5"})

    after = await idle_stats(client)

    def processed(stats: dict[str, Any], queue: str) -> int:
        count: int = stats["queues"][queue]["processed"]
        return count

    # The sign-up's mail job; FibTastic's job and the mail job it enqueued.
    assert processed(after, "mail") - processed(before, "mail") == 2
    assert processed(after, "default") - processed(before, "default") == 1
    assert after["total"]["failed"] == after["total"]["cancelled"] == 0
    assert after["total"]["workers"] == after["total"]["idle"] == 6


@pytest.mark.parametrize("path", ["/stats", "/inbox.json"])
@pytest.mark.parametrize("wait", ["soon", "-1", "31", "nan"])
async def test_a_bad_wait_is_refused(client: httpx.AsyncClient, path: str, wait: str) -> None:
    response = await client.get(path, params={"wait": wait})

    assert response.status_code == 400
    assert "wait must be a number of seconds" in response.json()["error"]


async def test_inbox_lists_newest_first_and_escapes_what_it_shows(
    client: httpx.AsyncClient, served: Served, address: str
) -> None:
    tag = uuid.uuid4().hex
    subjects = [f"first {tag}", f"<script>alert('second {tag}')</script>"]
    for subject in subjects:
        message = EmailMessage()
        message["From"] = "mallory@example.com"
        message["To"] = address
        message["Subject"] = subject
        message.set_content("<b>hi</b>")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=served.demo.catcher.port)

    page = (await client.get("/inbox")).text
    listed = await mail_to(client, address, wait=0)

    assert [mail["subject"] for mail in listed] == subjects[::-1]
    assert "<script>" not in page
    assert "<b>hi" not in page
    assert f"&lt;script&gt;alert(&#x27;second {tag}&#x27;)&lt;/script&gt;" in page
    assert page.index(f"second {tag}") < page.index(f"first {tag}")


# Lifecycle.


async def test_shutdown_sends_the_waiting_mail_before_the_catcher_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backburner")
    # One mail worker, 200 ms an email: 600 ms of mail, and the server is told to stop at once.
    demo = quiet_demo(mail_delay=2 * MAIL_DELAY, mail_workers=1)
    addresses = [f"user{i}@example.com" for i in range(3)]
    with serve(demo) as url:
        async with httpx.AsyncClient(base_url=url, verify=TLS) as client:
            for address in addresses:
                response = await client.post("/signup", data={"email": address})
                assert response.status_code == 303

    assert re.search(r"draining [1-9]\d* jobs", caplog.text)  # some mail was still to send
    assert "every accepted job finished" in caplog.text
    caught = {address for mail in demo.mailbox.messages() for address in mail.to}
    assert caught == set(addresses)


async def test_a_full_mail_queue_answers_503_and_sends_what_it_accepted() -> None:
    demo = quiet_demo(mail_delay=2 * MAIL_DELAY, mail_workers=1, max_pending=1)
    with serve(demo) as url:
        async with httpx.AsyncClient(base_url=url, verify=TLS) as client:
            running, waiting, refused = [
                await client.post("/signup", data={"email": f"user{i}@example.com"})
                for i in range(3)
            ]
            # The first is running and the second waits, both for the slow mail service.
            assert running.status_code == waiting.status_code == 303
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "too busy right now" in refused.text

    caught = {address for mail in demo.mailbox.messages() for address in mail.to}
    assert caught == {"user0@example.com", "user1@example.com"}


# The dashboard.


async def test_the_dashboard_is_mounted_and_asks_for_the_demo_credentials(
    served: Served, client: httpx.AsyncClient, address: str
) -> None:
    assert (await client.get("/backburner/")).status_code == 401
    wrong = await client.get("/backburner/", auth=("demo", "not-the-password"))
    assert wrong.status_code == 401
    await client.post("/signup", data={"email": address})
    await idle_stats(client)
    credentials = ("demo", served.demo.dashboard_password)
    page = await client.get("/backburner/", auth=credentials)
    assert page.status_code == 200
    assert "demo jobs" in page.text  # the title the demo gives it
    overview = (await client.get("/backburner/api/overview", auth=credentials)).json()
    mail = {q["name"]: q for q in overview["queues"]}["mail"]
    assert mail["processed"] >= 1
    assert 'href="/backburner/"' in (await client.get("/")).text  # linked from every page


def console_errors(page: Page) -> list[str]:
    """The errors the page's console will show, as they come."""
    errors: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", keep)
    return errors


@pytest.mark.e2e  # drives Debian's Chromium
def test_the_dashboard_of_the_demo_draws_its_charts_in_a_browser(served: Served) -> None:
    """Screenshot at test-artifacts/demo-dashboard.png; BB_UPDATE_SCREENSHOT=1 also writes
    docs/dashboard.png, the dashboard guide's picture."""
    from playwright.sync_api import expect, sync_playwright

    with httpx.Client(base_url=served.url, verify=TLS) as client:
        for n in range(12):
            client.post("/signup", data={"email": f"shot{n}@example.com"})
            client.post("/fibtastic", data={"email": f"fib{n}@example.com", "n": str(20 + n)})
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(
                http_credentials={"username": "demo", "password": served.demo.dashboard_password},
                viewport={"width": 1280, "height": 820},
            )
            page = context.new_page()
            errors = console_errors(page)
            page.goto(served.url + "/backburner/")
            # A sample is taken every 5 s: the mail queue's line appears with the first one.
            line = page.locator('figure[data-queue="mail"] polyline.processed')
            expect(line).to_have_count(1, timeout=15_000)
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "demo-dashboard.png"), full_page=True)
            if os.environ.get("BB_UPDATE_SCREENSHOT") == "1":
                page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


# The jobs that fill the rest of the dashboard: retries and the dead list, the periodic digest,
# the scheduled reminder; and the links from the demo's pages to each job's dashboard page.

#: A job id on the demo's pages, linked to its signed status; and its dashboard page beside it.
JOB_LINK = re.compile(r'<a class=job href="(/status/[^"?]*)\?([^"]*)">([^<]*)</a>')
DASHBOARD_LINK = re.compile(r'<a class=dashboard href="(/backburner/jobs/[^"]*)">dashboard</a>')


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@contextlib.asynccontextmanager
async def client_of(demo: Demo, allowed: Sequence[str] = ()) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``demo``, served on the test's loop (``serve_here``) for the block."""
    async with (
        serve_here(demo, allowed) as url,
        httpx.AsyncClient(base_url=url, timeout=15, verify=TLS) as client,
    ):
        yield client


async def dashboard_api(client: httpx.AsyncClient, demo: Demo, path: str) -> Any:
    """The dashboard's JSON for ``path`` (``dead``, ``jobs/ID``...), as the demo's user."""
    response = await client.get(f"/backburner/api/{path}", auth=("demo", demo.dashboard_password))
    assert response.status_code == 200, response.text
    return response.json()


def broken(address: str) -> str:
    """Where the broken address option sends the welcome email of ``address``."""
    return address.replace("@example.com", "@broken.invalid")


async def test_a_welcome_email_to_the_broken_address_is_retried_then_lands_on_the_dead_list(
    clock: ManualClock, address: str
) -> None:
    # With reminders: the broken address gets none.
    demo = quiet_demo(mail_delay=0, retry_backoff=10, reminder_delay=30, clock=clock)
    async with client_of(demo, allowed=[WELCOME_FAILS]) as client:
        response = await client.post("/signup", data={"email": address, "broken": "on"})
        assert response.status_code == 303
        [record] = demo.recent.newest_first()
        job = record.job
        assert job is not None
        seen = []
        for backoff in (10, 20):  # each retry's delay is this, give or take 25 % (jitter)
            await idle_stats(client)  # the attempt has ended
            retries = await dashboard_api(client, demo, "retries")
            seen.append((job.status, job.attempt, [entry["id"] for entry in retries["jobs"]]))
            clock.advance(backoff * 1.25)
        await idle_stats(client)
        [dead] = (await dashboard_api(client, demo, "dead"))["jobs"]
        scheduled = await dashboard_api(client, demo, "scheduled")
        page = (await client.get(response.headers["location"])).text

    assert record.address == broken(address)
    assert seen == [(JobStatus.RETRYING, 1, [job.id]), (JobStatus.RETRYING, 2, [job.id])]
    assert (dead["id"], dead["status"], dead["attempt_text"]) == (job.id, "dead", "3 of 3")
    assert dead["error"].startswith("SMTPRecipientsRefused")
    assert f"{broken(address)}: no such domain here" in dead["error"]
    assert (record.reminder, scheduled["jobs"]) == (None, [])
    assert demo.mailbox.messages() == []
    assert "That is the broken address" in page
    assert (f"/status/{job.id}", job.id) in {(p, text) for p, _, text in JOB_LINK.findall(page)}
    assert f"/backburner/jobs/{job.id}" in DASHBOARD_LINK.findall(page)


async def test_an_inline_sign_up_to_the_broken_address_fails_with_the_mail_services_refusal(
    client: httpx.AsyncClient, address: str
) -> None:
    before = await idle_stats(client)

    response = await client.post(
        "/signup", data={"email": address, "broken": "on", "mode": "inline"}
    )

    assert response.status_code == 502
    assert f"550 5.1.2 {broken(address)}: no such domain here" in response.text
    assert "in the background, a job would have retried it" in response.text
    assert (await idle_stats(client))["total"]["processed"] == before["total"]["processed"]


async def test_the_broken_option_is_a_checkbox(client: httpx.AsyncClient, address: str) -> None:
    response = await client.post("/signup", data={"email": address, "broken": "yes"})

    assert response.status_code == 400
    assert "broken is a checkbox" in response.text


async def test_the_digest_mails_the_sign_ups_of_each_period_and_nothing_when_there_are_none(
    clock: ManualClock,
) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second, third = (f"digest{n}-{tag}@example.com" for n in range(3))
    demo = quiet_demo(mail_delay=0, digest_every=60, clock=clock)

    def listed(mail: dict[str, Any]) -> list[str]:
        return re.findall(r"\S+@example\.com", mail["body"])

    async with client_of(demo) as client:
        for address in (first, second):
            assert (await client.post("/signup", data={"email": address})).status_code == 303
        await idle_stats(client)
        assert await mail_to(client, DIGEST_TO, wait=0) == []
        # Each minute: a digest of the two; none (no sign-up); a digest of the third.
        digests = []
        for new in ((), (), (third,)):
            for address in new:
                assert (await client.post("/signup", data={"email": address})).status_code == 303
            clock.advance(60)
            await idle_stats(client)
            digests.append(await mail_to(client, DIGEST_TO, wait=0))
        [periodic] = (await dashboard_api(client, demo, "periodic"))["periodic"]

    assert [len(caught) for caught in digests] == [1, 1, 2]
    [latest, earliest] = digests[-1]
    assert earliest["subject"] == "Sign-up digest: 2 new sign-ups"
    assert listed(earliest) == [first, second]
    assert latest["subject"] == "Sign-up digest: 1 new sign-up"
    assert listed(latest) == [third]
    shown = {key: periodic[key] for key in ("name", "schedule", "queue", "runs")}
    assert shown == {"name": "digest", "schedule": "every 60s", "queue": "mail", "runs": 3}


async def test_a_sign_up_schedules_a_reminder_that_is_mailed_after_the_delay(
    clock: ManualClock, address: str
) -> None:
    demo = quiet_demo(mail_delay=0, reminder_delay=30, clock=clock)
    async with client_of(demo) as client:
        response = await client.post("/signup", data={"email": address})
        await idle_stats(client)
        [record] = demo.recent.newest_first()
        reminder = record.reminder
        assert reminder is not None
        scheduled = await dashboard_api(client, demo, "scheduled")
        page = (await client.get(response.headers["location"])).text
        subjects = [[m["subject"] for m in await mail_to(client, address, wait=0)]]
        statuses = [reminder.status]
        for seconds in (29, 1):
            clock.advance(seconds)
            await idle_stats(client)
            statuses.append(reminder.status)
            subjects.append([m["subject"] for m in await mail_to(client, address, wait=0)])
        left = await dashboard_api(client, demo, "scheduled")

    [entry] = scheduled["jobs"]
    assert (entry["id"], entry["name"], entry["status"]) == (
        reminder.id,
        "send_reminder",
        "scheduled",
    )
    assert "A reminder follows in 30 s" in page
    assert (f"/status/{reminder.id}", reminder.id) in {(p, t) for p, _, t in JOB_LINK.findall(page)}
    assert f"/backburner/jobs/{reminder.id}" in DASHBOARD_LINK.findall(page)
    assert statuses == [JobStatus.SCHEDULED, JobStatus.SCHEDULED, JobStatus.SUCCEEDED]
    welcome, reminded = "Welcome to the backburner demo", "Did you finish signing up?"
    assert subjects == [[welcome], [welcome], [reminded, welcome]]
    assert left["jobs"] == []


async def test_every_job_id_on_the_demos_pages_links_to_its_status_and_its_dashboard_page(
    clock: ManualClock,
) -> None:
    demo = quiet_demo(mail_delay=0, retry_backoff=1, reminder_delay=30, clock=clock, fib_step=0)
    async with client_of(demo, allowed=[WELCOME_FAILS, REMINDERS_DROPPED]) as client:
        forms = [
            ("/signup", {"email": "linked@example.com"}),
            ("/signup", {"email": "linked@example.com", "broken": "on"}),
            ("/fibtastic", {"email": "linked@example.com", "n": "3"}),
        ]
        answers = [await client.post(path, data=form) for path, form in forms]
        for backoff in (1, 2):  # the broken address's retries, well before the reminder
            await idle_stats(client)
            clock.advance(backoff * 1.25)
        await idle_stats(client)
        pages = ["/", *(answer.headers["location"] for answer in answers)]
        texts = [(await client.get(path)).text for path in pages]
        links = {link for page in texts for link in JOB_LINK.findall(page)}
        dashboard_links = {link for page in texts for link in DASHBOARD_LINK.findall(page)}
        jobs = [job for r in demo.recent.newest_first() for job in (r.job, r.reminder) if job]
        # (An href's & is written &amp;.)
        statuses = {p: await client.get(f"{p}?{html.unescape(q)}") for p, q, _ in links}
        now = {(200, job.id, job.status.value) for job in jobs}  # (shutdown cancels the reminder)
        # Those the executor still holds; the others succeeded (see the next test).
        held = {job.id: job.status for job in jobs if job.status is not JobStatus.SUCCEEDED}
        shown = [await dashboard_api(client, demo, f"jobs/{job_id}") for job_id in held]

    assert len(jobs) == 4  # two welcome emails, a reminder, FibTastic's numbers
    assert {(path, text) for path, _, text in links} == {(f"/status/{j.id}", j.id) for j in jobs}
    assert dashboard_links == {f"/backburner/jobs/{job.id}" for job in jobs}
    # Each status link is signed: it answers without an account, for any state.
    answered = {(a.status_code, a.json()["id"], a.json()["status"]) for a in statuses.values()}
    assert answered == now
    assert sorted(held.values()) == [JobStatus.DEAD, JobStatus.SCHEDULED]
    assert [(data["job"]["id"], data["job"]["status"]) for data in shown] == list(held.items())


async def test_the_link_to_a_job_that_succeeded_finds_its_dashboard_page(
    served: Served, client: httpx.AsyncClient, address: str
) -> None:
    await client.post("/signup", data={"email": address})
    await idle_stats(client)
    [record] = [r for r in served.demo.recent.newest_first() if r.address == address]
    assert record.job is not None
    assert record.job.status is JobStatus.SUCCEEDED

    page = await client.get(
        f"/backburner/jobs/{record.job.id}", auth=("demo", served.demo.dashboard_password)
    )

    assert page.status_code == 200


@pytest.mark.e2e  # drives Debian's Chromium
def test_a_job_id_on_the_demo_opens_the_jobs_page_on_the_dashboard_in_a_browser() -> None:
    """Screenshot of the dead job's page at test-artifacts/demo-job.png."""
    from playwright.sync_api import expect, sync_playwright

    demo = quiet_demo(retry_backoff=0.05, reminder_delay=30)
    with serve(demo, allowed=[WELCOME_FAILS, REMINDERS_DROPPED]) as url:
        with httpx.Client(base_url=url, verify=TLS) as client:
            for form in (
                {"email": "click@example.com"},
                {"email": "click@example.com", "broken": "on"},
            ):
                assert client.post("/signup", data=form).status_code == 303
        failing, signed_up = demo.recent.newest_first()
        assert failing.job is not None
        assert signed_up.reminder is not None
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                context = browser.new_context(
                    http_credentials={"username": "demo", "password": demo.dashboard_password},
                    viewport={"width": 1280, "height": 820},
                )
                page = context.new_page()
                errors = console_errors(page)
                # The dead list updates live: the job shows there after its retries.
                page.goto(f"{url}/backburner/dead")
                expect(page.locator(f'a[href$="/jobs/{failing.job.id}"]')).to_be_visible(
                    timeout=30_000
                )
                for job, status in ((signed_up.reminder, "scheduled"), (failing.job, "dead")):
                    page.goto(f"{url}/")
                    page.locator(f'a[href="/backburner/jobs/{job.id}"]').click()
                    expect(page).to_have_url(f"{url}/backburner/jobs/{job.id}")
                    expect(page.locator('h1 [data-field="id"]')).to_have_text(job.id)
                    expect(page.locator('#job [data-field="status"]')).to_have_text(status)
                artifacts = ROOT / "test-artifacts"
                artifacts.mkdir(exist_ok=True)
                page.screenshot(path=str(artifacts / "demo-job.png"), full_page=True)
                assert errors == []
            finally:
                browser.close()


@pytest.mark.e2e  # drives Debian's Chromium
def test_fibtastic_shows_its_jobs_live_progress_and_eta_in_a_browser() -> None:
    """The bar follows the job's set_progress reports through the status app's events.
    Screenshot at test-artifacts/demo-progress.png."""
    from playwright.sync_api import expect, sync_playwright

    count = 200  # at 0.05 s a number: 10 s or more, while the page shows it mid-way
    demo = quiet_demo(fib_step=0.05)
    with serve(demo) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            errors = console_errors(page)
            page.goto(f"{url}/")
            form = page.locator('form[action="/fibtastic"]')
            form.locator("input[name=email]").fill("progress@example.com")
            form.locator("input[name=n]").fill(str(count))
            form.locator("button").click()
            expect(page).to_have_url(re.compile(r"/fibtastic/sent\?r=\d+$"))
            midway = page.wait_for_function(
                """() => {
                    const bar = document.getElementById("progress");
                    const eta = document.getElementById("progress-eta").textContent;
                    return 0 < bar.value && bar.value < bar.max && /^about \\d+ s left$/.test(eta)
                        && [bar.value, bar.max, eta, bar.dataset.status];
                }""",
                timeout=20_000,
            ).json_value()
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "demo-progress.png"), full_page=True)
            text = page.locator("#progress-text")
            expect(text).to_have_text("done: the email is on its way", timeout=60_000)
            final = page.locator("#progress").evaluate("bar => [bar.value, bar.max]")
            eta_after = page.locator("#progress-eta").text_content()
            assert errors == []
        finally:
            browser.close()

    value, maximum, _, status = midway
    assert 0 < value < maximum == count
    assert status == "running"
    assert (final, eta_after) == ([count, count], "")
    [record] = demo.recent.newest_first()
    assert record.job is not None
    assert record.job.status is JobStatus.SUCCEEDED


def test_the_command_line_reads_the_jobs_timings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DEMO_DIGEST_EVERY", "DEMO_REMINDER_DELAY", "DEMO_RETRY_BACKOFF"):
        monkeypatch.delenv(name, raising=False)
    defaults = parse_args([])
    monkeypatch.setenv("DEMO_DIGEST_EVERY", "5")
    monkeypatch.setenv("DEMO_REMINDER_DELAY", "off")
    monkeypatch.setenv("DEMO_RETRY_BACKOFF", "0.5")
    changed = parse_args([])

    assert (defaults.digest_every, defaults.reminder_delay, defaults.retry_backoff) == (60, 30, 2)
    assert (changed.digest_every, changed.reminder_delay, changed.retry_backoff) == (5, None, 0.5)
    assert parse_args(["--digest-every", "OFF", "--reminder-delay", "0"]).digest_every is None
    assert parse_args(["--reminder-delay", "0"]).reminder_delay == 0


@pytest.mark.parametrize(
    "settings",
    [{"digest_every": 0}, {"reminder_delay": -1}, {"retry_backoff": float("nan")}],
)
def test_the_demo_refuses_bad_job_timings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(settings))} must be"):
        Demo(**settings)


def test_the_command_line_reads_its_defaults_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DEMO_HOST", "DEMO_PORT", "DEMO_SMTP_PORT", "DEMO_MAIL_DELAY"):
        monkeypatch.delenv(name, raising=False)
    defaults = parse_args([])
    monkeypatch.setenv("DEMO_PORT", "8123")
    monkeypatch.setenv("DEMO_MAIL_DELAY", "0.5")

    assert (defaults.host, defaults.port, defaults.smtp_port) == ("127.0.0.1", 8000, 0)
    assert defaults.mail_delay == 0.2
    assert parse_args([]).port == 8123
    assert parse_args([]).mail_delay == 0.5
    assert parse_args(["--port", "9000"]).port == 9000


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "70000"],
        ["--port", "http"],
        ["--mail-delay", "-1"],
        ["--digest-every", "0"],
        ["--reminder-delay", "soon"],
        ["--retry-backoff", "nan"],
    ],
)
def test_the_command_line_refuses_bad_values(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)

    assert exit_info.value.code == 2
    assert "python -m demo_app: error:" in capsys.readouterr().err


class DemoProcess(ChildProcess):
    """``python -m demo_app ARGS`` with no DEMO_ variable but those in ``env``."""

    def __init__(self, output: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        environ = {
            name: value for name, value in os.environ.items() if not name.startswith("DEMO_")
        }
        environ.update(env or {})
        super().__init__([sys.executable, "-m", "demo_app", *args], output, env=environ)

    def ctrl_c(self) -> None:
        """Ctrl+C, as a person would, and the clean exit that follows."""
        self.send(signal.SIGINT)
        code, _ = self.wait_exit(within=15)
        assert code == 0, self.tail()
        assert "Finished server process" in self.output()


@contextlib.contextmanager
def demo_process(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[DemoProcess]:
    """Run the demo until it has printed that it listens; kill it at the end of the block (it
    is gone already if the test pressed Ctrl+C); show its output if a test fails."""
    demo = DemoProcess(tmp_path / "demo.log", *args, env=env)
    try:
        demo.wait_for_output("Uvicorn running on", 15)  # logged once it listens
        yield demo
    finally:
        demo.kill()
        print(demo.output())  # pytest shows it if the test fails


@pytest.mark.e2e
async def test_python_m_demo_app_serves_mails_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    # No digest: its ticks are on the minute, so one could come in the middle of the test.
    quiet = {"DEMO_DIGEST_EVERY": "off"}
    args = ("--port", str(port), "--mail-delay", "0.05")
    with demo_process(tmp_path, *args, env=quiet) as demo:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", verify=TLS) as client:
            response = await client.post("/signup", data={"email": "cli@example.com"})
            assert response.status_code == 303
            printed = re.search(r"user 'demo', password '([\w-]+)'", demo.output())
            assert printed, demo.tail()
            dashboard = await client.get("/backburner/", auth=("demo", printed[1]))
            assert dashboard.status_code == 200
            [mail] = await mail_to(client, "cli@example.com")
            assert mail["subject"] == "Welcome to the backburner demo"
        demo.ctrl_c()

    text = demo.output()
    assert f"serving on http://127.0.0.1:{port}/" in text
    assert re.search(r"mail catcher: SMTP on 127\.0\.0\.1:\d+", text)
    assert "started, queues default (workers=4" in text
    # demo_app/logging.json: time, level and logger on every line, and the job it came from.
    assert re.search(r"(?m)^INFO: +\S+ \S+ backburner \[job -\]: started, queues default", text)
    # The sign-up's reminder, 30 s away by default, is dropped at Ctrl+C, and said so.
    assert re.search(
        r"with 1 unfinished jobs .* 1 scheduled or waiting to retry\):\n"
        r"\s+scheduled\s+\S+ send_reminder\(.*'cli@example\.com'\)",
        text,
    )
    assert "mail catcher: stopped after catching 1 message(s)" in text


@pytest.mark.e2e
async def test_on_a_busy_port_the_demo_serves_on_a_free_one_and_says_which(
    tmp_path: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with demo_process(tmp_path, env={"DEMO_PORT": str(taken)}) as demo:
            text = demo.output()
            said = re.search(rf"port {taken} is busy .*, so the demo uses port (\d+) instead", text)
            assert said, demo.tail()
            port = int(said[1])
            assert port != taken
            assert f"DEMO_PORT={port} make demo" in text
            assert f"serving on http://127.0.0.1:{port}/" in text
            assert f"Uvicorn running on http://127.0.0.1:{port}" in text
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", verify=TLS) as client:
                assert (await client.get("/")).status_code == 200
            demo.ctrl_c()


def test_a_port_that_cannot_be_had_for_another_reason_ends_with_a_message() -> None:
    """Not a busy port: an address this machine does not have (TEST-NET-1, never routed)."""
    with pytest.raises(SystemExit, match=r"cannot serve on 192\.0\.2\.1 port 8000: .+"):
        usable_port("192.0.2.1", 8000)
