"""The dashboard in Debian's Chromium, driven by Playwright, against a real uvicorn server.

Every page is watched for console errors, uncaught exceptions and CSP violations, and for any
XSS payload that ran (each payload would set ``window.__xss``). Waits are for selectors and
text, never sleeps. The overview's screenshot is saved under ``test-artifacts/`` (and, with
``BB_UPDATE_SCREENSHOT=1``, as ``docs/dashboard.png`` for the README).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from ..e2e._uvicorn import ROOT, Uvicorn
from ..e2e.apps._payloads import PAYLOADS, XSS_QUEUE
from .conftest import PASSWORD, USER, control

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = ("/", "/busy", "/pending", "/scheduled", "/retries", "/dead", "/periodic")
# Collects CSP violations before any page script runs (init scripts are exempt from the CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Watched:
    """A page, and everything that went wrong on it."""

    def __init__(self, context: BrowserContext) -> None:
        self.page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on(
            "console",
            lambda message: (
                message.type == "error" and self.problems.append(f"console: {message.text}")
            ),
        )
        self.page.on("dialog", lambda dialog: dialog.accept())

    def open(self, server: Uvicorn, path: str, updates: int = 1) -> Page:
        """Go to ``path`` and wait until the script has rendered ``updates`` API answers."""
        self.page.goto(server.base_url + path)
        self.wait_updates(updates)
        return self.page

    def wait_updates(self, count: int) -> None:
        # (No wait_for_function: it evaluates a string, which the page's CSP rightly forbids.)
        at_least = re.compile(rf"^([{count}-9]|[1-9][0-9]+)$")
        expect(self.page.locator("body")).to_have_attribute("data-updated", at_least)

    def assert_clean(self) -> None:
        assert self.page.evaluate("window.__xss") is None, "an XSS payload ran"
        assert self.page.evaluate("window.__csp") == [], "CSP violations"
        assert self.problems == []


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )
    context.add_init_script(WATCH_CSP)
    try:
        yield Watched(context)
    finally:
        context.close()


def test_every_page_opens_updates_live_and_stays_clean(server: Uvicorn, watched: Watched) -> None:
    for path in PAGES:
        page = watched.open(server, "/bb" + path, updates=2)  # the first render and one poll
        expect(page.locator("#live")).to_have_text("live")
        watched.assert_clean()


def test_a_job_appears_on_the_busy_page_and_leaves_it_when_it_finishes(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/busy")
    job_id = control(server, "hold", key="live-busy")["id"]
    row = page.locator(f'tr[data-id="{job_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("td.col-name")).to_have_text("hold")
    expect(row.locator("td.col-args")).to_have_text("key='live-busy'")  # named, as in hold(key)
    control(server, "release", key="live-busy")
    expect(row).to_have_count(0)
    # Its page still knows it (the dashboard saw it) and shows how it ended.
    watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded")
    watched.assert_clean()


def test_a_jobs_page_names_its_arguments_and_shows_what_it_returned(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/busy")
    job_id = control(server, "hold", key="named-result")["id"]
    expect(page.locator(f'tr[data-id="{job_id}"]')).to_be_visible()  # the dashboard saw it
    watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator('[data-field="args"] li')).to_have_text(["key='named-result'"])
    expect(page.locator('[data-field="result"]')).to_be_hidden()  # running: nothing yet
    control(server, "release", key="named-result")
    # The live update fills in what it returned, and shows no empty traceback.
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded")
    expect(page.locator('[data-field="result"]')).to_have_text("'named-result'")
    expect(page.locator('[data-field="result"]')).to_be_visible()
    expect(page.locator('[data-field="traceback"]')).to_be_hidden()
    expect(page.get_by_text("Traceback")).to_be_hidden()
    # As served, without the script's help, too.
    watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator("dl.job")).to_contain_text("key='named-result'")
    expect(page.locator('[data-field="result"]')).to_have_text("'named-result'")
    expect(page.get_by_text("No error.")).to_have_count(0)
    watched.assert_clean()


def test_an_unknown_jobs_page_has_the_navigation(server: Uvicorn, watched: Watched) -> None:
    page = watched.page
    response = page.goto(server.base_url + "/bb/jobs/no-such-job")
    assert response is not None
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("No job no-such-job here")
    page.locator("header nav").get_by_role("link", name="Dead").click()
    expect(page).to_have_url(server.base_url + "/bb/dead")
    watched.wait_updates(1)
    # (The 404 itself is the one console error: Chromium reports the document's status.)
    assert all("404" in problem for problem in watched.problems)
    watched.problems.clear()
    watched.assert_clean()


def test_the_overview_counts_a_finished_job_without_a_reload(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/")
    busy = page.locator('[data-total="busy"]')
    before = int(busy.inner_text())
    control(server, "hold", key="live-overview")
    expect(busy).to_have_text(str(before + 1))
    control(server, "release", key="live-overview")
    expect(busy).to_have_text(str(before))
    watched.assert_clean()


def test_retrying_a_dead_job_by_clicking(server: Uvicorn, watched: Watched) -> None:
    job_id = control(server, "flaky", key="click-retry")["id"]
    page = watched.open(server, "/bb/dead")
    row = page.locator(f'tr[data-id="{job_id}"]')
    expect(row.locator("td.col-error")).to_contain_text("the mail server is down")
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#flash")).to_contain_text(f"Job {job_id} sent to queue default again")
    expect(row).to_have_count(0)  # it succeeded this time
    watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded")
    # Past its one automatic attempt: what gave it a second says so (never "2 of 1").
    expect(page.locator('[data-field="attempt_text"]')).to_have_text(
        "2 (manual retry; 1 allowed automatically)"
    )
    watched.assert_clean()


def test_discarding_a_dead_job_from_its_own_page(server: Uvicorn, watched: Watched) -> None:
    job_id = control(server, "fail", message="discard me")["id"]
    page = watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator('[data-field="traceback"]')).to_contain_text("RuntimeError: discard me")
    page.locator('[data-show-if="in_failures"]').get_by_role("button", name="Discard").click()
    expect(page.locator("#flash")).to_contain_text(f"Job {job_id} discarded")
    expect(page.locator('[data-show-if="in_failures"]')).to_be_hidden()
    watched.assert_clean()


def test_pausing_and_resuming_a_queue_by_clicking(server: Uvicorn, watched: Watched) -> None:
    page = watched.open(server, "/bb/")
    row = page.locator('#queues tr[data-queue="mail"]')
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".paused-badge")).to_have_text("paused")
    job_id = control(server, "hold", key="paused-mail", queue="mail")["id"]
    with server.client() as client:
        client.auth = (USER, PASSWORD)
        pending = client.get("/bb/api/pending", params={"queue": "mail"}).json()["jobs"]
        assert job_id in [job["id"] for job in pending]
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".paused-badge")).to_have_count(0)
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    page.goto(server.base_url + "/bb/busy?queue=mail")
    expect(page.locator(f'tr[data-id="{job_id}"]')).to_be_visible()  # it started
    control(server, "release", key="paused-mail")
    expect(page.locator(f'tr[data-id="{job_id}"]')).to_have_count(0)
    watched.assert_clean()


def test_triggering_a_periodic_job_by_clicking(server: Uvicorn, watched: Watched) -> None:
    page = watched.open(server, "/bb/periodic")
    row = page.locator("#periodic tr").filter(has_text="nightly_report")
    runs = int(row.locator("td").nth(5).inner_text())
    row.get_by_role("button", name="Run now").click()
    expect(page.locator("#flash")).to_contain_text("Periodic job nightly_report started")
    expect(row.locator("td").nth(5)).to_have_text(str(runs + 1))
    watched.assert_clean()


def test_no_payload_runs_anywhere_and_each_shows_as_text(server: Uvicorn, watched: Watched) -> None:
    ids = control(server, "xss")["ids"]
    for path in (*PAGES, f"/pending?queue={XSS_QUEUE}", *(f"/jobs/{job_id}" for job_id in ids)):
        watched.open(server, "/bb" + path)  # rendered once by the script from the JSON
        watched.assert_clean()
    page = watched.open(server, "/bb/dead?limit=200")
    for payload in PAYLOADS:
        expect(page.locator("td.col-name").filter(has_text=payload).first).to_be_visible()
    expect(page.locator("script")).to_have_count(1)  # ours alone
    watched.open(server, "/bb/")
    expect(page.locator("#queues").get_by_text(XSS_QUEUE)).to_be_visible()
    watched.assert_clean()


def test_read_only_pages_offer_no_buttons(server: Uvicorn, watched: Watched) -> None:
    for path in PAGES:
        page = watched.open(server, "/ro" + path)
        expect(page.locator("button")).to_have_count(0)
        expect(page.locator("text=read-only")).to_be_visible()
    watched.assert_clean()


def test_a_screenshot_of_the_overview(server: Uvicorn, watched: Watched) -> None:
    for key in ("shot-1", "shot-2"):
        control(server, "hold", key=key)
    control(server, "fail", message="SMTP 451: try again later")
    for n in range(5):
        control(server, "quick", key=f"shot-{n}")
    page = watched.open(server, "/bb/", updates=2)
    expect(page.locator("#charts figure svg").first).to_be_visible()
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    path = artifacts / "dashboard-overview.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"overview screenshot: {path}")
    if os.environ.get("BB_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(Path(ROOT, "docs", "dashboard.png")), full_page=True)
    assert path.stat().st_size > 10_000
    for key in ("shot-1", "shot-2"):
        control(server, "release", key=key)
    watched.assert_clean()
