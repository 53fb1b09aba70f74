"""The dashboard in Debian's Chromium, driven by Playwright, against a real uvicorn server.

Every page is watched for console errors, uncaught exceptions and CSP violations, and for any
XSS payload that ran (each payload would set ``window.__xss``). Waits are for selectors, text
and the counters the page's script keeps on ``<body>`` (``data-updated``: updates rendered;
``data-ticks``: poll intervals gone by, updated or not), never sleeps. The screenshots (light,
dark, 390 px wide) are saved under ``test-artifacts/`` and, with ``BB_UPDATE_SCREENSHOT=1``,
under ``docs/images/`` for the docs (the README's ``docs/dashboard.png`` is the demo's, made by
``tests/test_demo_app.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    expect,
    sync_playwright,
)

from ..browsers import launch
from ..e2e._uvicorn import Serve, Uvicorn, running
from ..e2e.apps._payloads import PAYLOADS, XSS_QUEUE
from ..processes import ROOT
from .conftest import PASSWORD, USER, control

pytestmark = pytest.mark.e2e

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
        browser = launch(playwright)
        yield browser
        browser.close()


class Watched:
    """A page, and everything that went wrong on it."""

    def __init__(self, context: BrowserContext) -> None:
        self.page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.problems: list[str] = []
        self.page.on("pageerror", self._page_error)
        self.page.on("console", self._console)
        self.page.on("dialog", lambda dialog: dialog.accept())

    def _page_error(self, error: Error) -> None:
        self.problems.append(f"page error: {error}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def open(self, server: Uvicorn, path: str, updates: int = 1) -> Page:
        """Go to ``path`` and wait until the script has rendered ``updates`` API answers."""
        self.page.goto(server.base_url + path)
        self.wait_updates(updates)
        return self.page

    def wait_updates(self, count: int) -> None:
        self.wait_counter("updated", count)

    def wait_counter(self, name: str, count: int) -> None:
        """Wait until the script's counter ``data-<name>`` on ``<body>`` reaches ``count``."""
        # (No wait_for_function: it evaluates a string, which the page's CSP rightly forbids.)
        expect(self.page.locator("body")).to_have_attribute(f"data-{name}", at_least(count))

    def counter(self, name: str) -> int:
        return int(self.page.locator("body").get_attribute(f"data-{name}") or 0)

    def assert_clean(self) -> None:
        assert self.page.evaluate("window.__xss") is None, "an XSS payload ran"
        assert self.page.evaluate("window.__csp") == [], "CSP violations"
        assert self.problems == []


def at_least(count: int) -> re.Pattern[str]:
    """A pattern matching the decimal integers from ``count`` up."""
    digits = str(count)
    forms = [digits, rf"[1-9][0-9]{{{len(digits)},}}"]  # count itself, or any longer number
    for i, digit in enumerate(digits):  # as long, and greater from digit i on
        if digit != "9":
            forms.append(digits[:i] + f"[{int(digit) + 1}-9]" + "[0-9]" * (len(digits) - i - 1))
    return re.compile(f"^({'|'.join(forms)})$")


#: ``browse(width=..., height=..., color_scheme=...)``: a new signed-in browser tab, watched.
Browse = Callable[..., Watched]


@pytest.fixture
def browse(browser: Browser) -> Iterator[Browse]:
    contexts: list[BrowserContext] = []

    def new(
        width: int = 1280, height: int = 900, color_scheme: Literal["light", "dark"] = "light"
    ) -> Watched:
        context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
        )
        contexts.append(context)
        context.add_init_script(WATCH_CSP)
        return Watched(context)

    try:
        yield new
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def watched(browse: Browse) -> Watched:
    return browse()


@pytest.fixture
def one_queue(tmp_path: Path) -> Iterator[Uvicorn]:
    """A fresh server whose executor has the default single queue (and no failure yet)."""
    start: Serve
    with running(tmp_path) as start:
        server = start("dashboard_one_queue")
        server.wait_ready()
        yield server


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


def test_progress_updates_live_on_the_busy_page_and_the_jobs_page(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/busy")
    job_id = control(server, "progress", key="live-progress")["id"]
    control(server, "step", key="live-progress", done=3)
    cell = page.locator(f'tr[data-id="{job_id}"] td.col-progress')
    expect(cell).to_have_text("3 of 10 (30%) · step 3")
    control(server, "step", key="live-progress", done=7)
    expect(cell).to_contain_text("7 of 10 (70%)")  # (and the time left, once it can be told)
    watched.open(server, f"/bb/jobs/{job_id}")
    expect(page.locator('[data-field="progress"]')).to_contain_text("7 of 10 (70%)")
    control(server, "step", key="live-progress", done=9)
    expect(page.locator('[data-field="progress"]')).to_contain_text("9 of 10 (90%)")
    control(server, "step", key="live-progress", done=-1)
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
        expect(page.locator("form.action")).to_have_count(0)
        # Only the header's pause of live updates, which changes nothing on the server.
        expect(page.locator("button")).to_have_count(1)
        expect(page.locator("button#live-toggle")).to_be_visible()
        expect(page.locator("text=read-only")).to_be_visible()
    watched.assert_clean()


# Polish (issue 17): live updates in place, the pause control, a narrow screen, the dark
# scheme, the skip link, the chart's size, the screenshots in the docs.

# Where the focus is: the element (kept in window.__focused by MARK_FOCUS), the page's scroll
# position, how far its table's box is scrolled, and whether it shows in that box.
FOCUS = """(mark) => {
  const active = document.activeElement;
  if (mark) window.__focused = active;
  const box = active.closest(".table-scroll");
  const [a, b] = [active.getBoundingClientRect(), box && box.getBoundingClientRect()];
  return {
    same: active === window.__focused,
    active: active.outerHTML.slice(0, 80),
    page: [window.scrollX, window.scrollY],
    boxScroll: box ? box.scrollLeft : 0,
    inBox: !box || (a.left >= b.left - 1 && a.right <= b.right + 1),
  };
}"""
# Every piece of visible text of the header and main (SVG text too), with its colour and the
# background behind it (the first opaque one up the tree, translucent ones blended over it),
# and their contrast ratio (WCAG 2: (L1 + 0.05) / (L2 + 0.05), from relative luminances).
CONTRASTS = """() => {
  const rgba = (text) => {
    const n = (text.match(/[\\d.]+/g) || []).map(Number);
    return n.length >= 4 ? n.slice(0, 4) : [n[0], n[1], n[2], 1];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[3] * top[i] + (1 - top[3]) * under[i]);
  const background = (node) => {
    const layers = [];
    for (let n = node; n; n = n.parentElement) {
      const bg = rgba(getComputedStyle(n).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    let color = [255, 255, 255];
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const node of document.querySelectorAll("header *, main, main *")) {
    const own = Array.from(node.childNodes).some((c) => c.nodeType === 3 && c.data.trim());
    if (!own || node.closest(".sr-only") || !node.checkVisibility()) continue;
    const style = getComputedStyle(node);
    const bg = background(node);
    const fg = over(rgba(node instanceof SVGElement ? style.fill : style.color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    found.push({
      text: node.textContent.trim().slice(0, 40),
      ratio: (hi + 0.05) / (lo + 0.05),
      fg: fg.map(Math.round),
      bg: bg.map(Math.round),
    });
  }
  return { page: luminance(background(document.documentElement)), texts: found };
}"""


def tab_to(page: Page, selector: str, presses: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (as a keyboard user would)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus in {presses} presses of Tab")


def assert_focus_kept(watched: Watched, updates: int = 2) -> dict[str, Any]:
    """``updates`` later, the same element has the focus, the page has not scrolled, and the
    element still shows in its table's box (whose content may have narrowed a little: a
    "finished 59 s ago" became "1 min 0 s ago")."""
    marked: dict[str, Any] = watched.page.evaluate(FOCUS, True)
    assert marked["inBox"]
    watched.wait_updates(watched.counter("updated") + updates)
    now = watched.page.evaluate(FOCUS, False)
    assert now["same"], f"the focus moved to {now['active']}"
    assert now["page"] == marked["page"]
    assert now["inBox"], (
        f"the table's box scrolled from {marked['boxScroll']} to {now['boxScroll']}"
    )
    return marked


def test_live_updates_keep_the_focus_on_a_queues_pause_button(
    server: Uvicorn, browse: Browse
) -> None:
    # 390 px wide and 500 high: the page scrolls down and the queues' table sideways to show
    # the button, and both must stay where the reader left them.
    watched = browse(width=390, height=500)
    page = watched.open(server, "/bb/")
    tab_to(page, '#queues tr[data-queue="mail"] button[data-action="pause"]')
    focus = assert_focus_kept(watched)
    assert focus["boxScroll"] > 0  # (the table's box had scrolled to show the button)
    assert focus["page"][1] > 0  # (and the page, down to the table)
    watched.assert_clean()


def test_live_updates_keep_the_focus_on_a_dead_jobs_retry_button(
    server: Uvicorn, browse: Browse
) -> None:
    job_id = control(server, "fail", message="focus: the mail server is down")["id"]
    watched = browse(height=400)
    page = watched.open(server, "/bb/dead?limit=200")
    tab_to(page, f'tr[data-id="{job_id}"] button[data-action="retry"]')
    assert_focus_kept(watched)
    watched.assert_clean()


def test_a_focused_row_that_leaves_hands_the_focus_to_its_table(
    server: Uvicorn, watched: Watched
) -> None:
    job_id = control(server, "hold", key="focus-leaves")["id"]
    page = watched.open(server, "/bb/busy")
    tab_to(page, f'tr[data-id="{job_id}"] button[data-action="cancel"]')
    control(server, "release", key="focus-leaves")
    expect(page.locator(f'tr[data-id="{job_id}"]')).to_have_count(0)
    # Not <body>: the next Tab goes on from the table, not from the top of the page.
    assert page.evaluate("() => document.activeElement.matches('.table-scroll')")
    watched.assert_clean()


def test_a_live_update_is_announced_once_politely_not_cell_by_cell(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/busy")
    job_id = control(server, "hold", key="announce")["id"]
    expect(page.locator(f'tr[data-id="{job_id}"]')).to_be_visible()
    expect(page.locator("#announce")).to_have_text(re.compile(r"^1 new; \d+ jobs? in all\.$"))
    expect(page.locator("#announce")).to_have_attribute("aria-live", "polite")
    # The regions that speak: the announcement and the actions' messages; no table.
    expect(page.locator("[aria-live]")).to_have_count(2)
    expect(page.locator("table [aria-live], [aria-live] table")).to_have_count(0)
    control(server, "release", key="announce")
    expect(page.locator("#announce")).to_have_text(re.compile(r"^1 gone; \d+ jobs? in all\.$"))
    watched.assert_clean()


def test_pausing_live_updates_stops_them_in_this_tab_until_resumed(
    server: Uvicorn, browse: Browse
) -> None:
    watched = browse()
    page = watched.open(server, "/bb/busy?poll=1")
    toggle = page.locator("#live-toggle")
    tab_to(page, "#live-toggle")
    page.keyboard.press("Enter")
    expect(toggle).to_have_text("Resume updates")
    expect(page.locator("#live")).to_have_text("paused")
    expect(page.locator("#announce")).to_have_text("Live updates paused.")
    updated, ticks = watched.counter("updated"), watched.counter("ticks")
    watched.wait_counter("ticks", ticks + 3)  # three poll intervals gone by...
    assert watched.counter("updated") == updated  # ...and no update shown
    # Remembered by this tab: the next page load starts paused (its first render aside).
    page.reload()
    watched.wait_counter("ticks", 2)
    assert watched.counter("updated") == 1
    expect(toggle).to_have_text("Resume updates")
    # Not by another tab.
    other = browse()
    other.open(server, "/bb/busy?poll=1", updates=2)
    expect(other.page.locator("#live-toggle")).to_have_text("Pause updates")
    # Resumed by the keyboard too (Space, this time).
    toggle.focus()
    page.keyboard.press(" ")
    expect(toggle).to_have_text("Pause updates")
    expect(page.locator("#live")).to_have_text("live")
    watched.wait_updates(3)
    watched.assert_clean()
    other.assert_clean()


def test_the_skip_link_is_the_first_stop_and_moves_the_focus_to_main(
    server: Uvicorn, watched: Watched
) -> None:
    page = watched.open(server, "/bb/dead")
    page.keyboard.press("Tab")
    link = page.locator("a.skip-link")
    expect(link).to_be_focused()
    expect(link).to_have_text("Skip to main content")
    expect(link).to_be_in_viewport()  # shown when focused (off screen otherwise)
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    page.keyboard.press("Tab")  # and the next stop is in main, not the header
    assert page.evaluate("() => document.querySelector('main').contains(document.activeElement)")
    watched.assert_clean()


def test_every_page_fits_a_390_px_screen_and_errors_stay_readable(
    server: Uvicorn, browse: Browse
) -> None:
    message = "SMTP 451 4.7.1: the mail server at smtp.example.com deferred it, try later"
    job_id = control(server, "fail", message=message)["id"]
    control(server, "fail", message="a-token-with-no-spaces-" * 8)
    watched = browse(width=390, height=844)
    for path in (*PAGES, f"/jobs/{job_id}"):
        page = watched.open(server, "/bb" + path)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"
    page = watched.open(server, "/bb/dead")
    widths = page.locator("td.col-error").evaluate_all(
        "(cells) => cells.map((c) => c.getBoundingClientRect().width)"
    )
    assert widths
    assert min(widths) >= 180, f"error cells {widths} px wide: wrapped letter by letter"
    # The table scrolls in its box instead of widening the page.
    box = page.locator(".table-scroll")
    assert box.evaluate("(b) => b.scrollWidth > b.clientWidth")
    watched.assert_clean()


def test_text_is_readable_in_the_dark_scheme_and_the_light_one(
    server: Uvicorn, browse: Browse
) -> None:
    job_id = control(server, "fail", message="contrast: the mail server is down")["id"]
    hold = control(server, "hold", key="contrast")["id"]
    control(server, "hold", key="contrast-mail", queue="mail")
    for scheme in ("dark", "light"):
        watched = browse(color_scheme=scheme)
        for path in ("/", "/busy", "/dead", "/periodic", f"/jobs/{job_id}", f"/jobs/{hold}"):
            page = watched.open(server, "/bb" + path)
            found = page.evaluate(CONTRASTS)
            if scheme == "dark":
                assert found["page"] < 0.05, f"{path}: the page is not dark"
            poor = [text for text in found["texts"] if text["ratio"] < 4.5]
            assert found["texts"]
            assert not poor, f"{scheme} {path}: contrast below 4.5 for {poor}"
        watched.assert_clean()
    for key in ("contrast", "contrast-mail"):
        control(server, "release", key=key)


def test_one_queues_chart_is_sized_by_its_data_with_no_failed_line_at_zero(
    one_queue: Uvicorn, watched: Watched
) -> None:
    for n in range(3):
        control(one_queue, "quick", key=f"chart-{n}")
    page = watched.open(one_queue, "/bb/")
    charts = page.locator("#charts svg.chart")
    expect(charts).to_have_count(2)  # throughput and wait, for the one queue
    # (Samples are taken every 5 s: the first may take that long.)
    # 360 px for 120 samples (10 minutes of 5 s), not the 1200 px of the card's row...
    for width in charts.evaluate_all("(c) => c.map((svg) => svg.getBoundingClientRect().width)"):
        assert 200 <= width <= 400
    # ...and so axis text of its font size (11 px), not three times that.
    heights = page.locator("#charts text.axis").evaluate_all(
        "(t) => t.map((text) => text.getBoundingClientRect().height)"
    )
    assert heights
    assert max(heights) <= 16
    processed = page.locator("#charts polyline.processed")
    expect(processed).to_have_count(1, timeout=15_000)
    expect(page.locator("#charts polyline.failed")).to_have_count(0)
    # Waits of microseconds (a free worker) on a scale of 10 ms at least, which shows them as
    # next to nothing (not "max 0 ms", a full-height line of noise).
    wait_scale = re.compile(r"^Wait for a worker \(max ([1-9][0-9]+ ms|[0-9.]+ s)\)$")
    expect(page.locator("#charts text.axis").filter(has_text="Wait")).to_have_text(wait_scale)
    # A failure draws the line.
    control(one_queue, "fail", message="chart: boom")
    expect(page.locator("#charts polyline.failed")).to_have_count(1, timeout=15_000)
    watched.assert_clean()


def test_screenshots_light_dark_and_390_px(one_queue: Uvicorn, browse: Browse) -> None:
    for key in ("shot-1", "shot-2"):
        control(one_queue, "hold", key=key)
    control(one_queue, "fail", message="SMTP 451 4.7.1: mail.example.com deferred it, try later")
    control(one_queue, "fail", message="ConnectionRefusedError: [Errno 111] Connection refused")
    # Jobs in three sampling intervals (one sample every 5 s), for a line with some shape.
    light = browse(height=760)
    page = light.open(one_queue, "/bb/")
    for batch, jobs in enumerate((8, 3, 12)):
        for n in range(jobs):
            control(one_queue, "quick", key=f"shot-{batch}-{n}")
        points = re.compile(r"^\S+" + r" \S+" * batch + "( |$)")
        line = page.locator("#charts polyline.processed")
        expect(line).to_have_attribute("points", points, timeout=20_000)
    shots = {
        "dashboard-light.png": (light, "/bb/"),
        "dashboard-dark.png": (browse(height=760, color_scheme="dark"), "/bb/"),
        "dashboard-390-overview.png": (browse(width=390, height=844), "/bb/"),
        "dashboard-390-dead.png": (browse(width=390, height=844), "/bb/dead"),
    }
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    update = os.environ.get("BB_UPDATE_SCREENSHOT") == "1"
    for name, (watched, path) in shots.items():
        page = watched.open(one_queue, path)
        if path == "/bb/dead":  # the table's box scrolled to the errors, as a reader would
            page.locator("td.col-error").first.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / name), full_page=True)
        assert (artifacts / name).stat().st_size > 10_000
        if update:
            (ROOT / "docs" / "images").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "docs" / "images" / name), full_page=True)
        watched.assert_clean()
    for key in ("shot-1", "shot-2"):
        control(one_queue, "release", key=key)
