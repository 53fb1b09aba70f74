"""The demo's HTML pages: plain strings, no template engine, every value escaped on the way in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from backburner import Job

from .jobs import BROKEN_DOMAIN, MAX_FIBONACCI
from .mailcatcher import CaughtMail
from .recent import MODES, RecentRequests, RequestRecord

__all__ = [
    "DASHBOARD",
    "STATUS",
    "Features",
    "StatusURL",
    "error_page",
    "home_page",
    "inbox_page",
    "sent_page",
]

#: Where the demo mounts backburner's dashboard.
DASHBOARD = "/backburner"
#: Where the demo mounts backburner's status app.
STATUS = "/status"

#: Gives the (signed) URL of a job's status: ``status_url(job_id)``.
StatusURL = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Features:
    """What the pages tell of the jobs that run on their own (None: that one is off)."""

    digest_every: float | None
    digest_to: str
    reminder_delay: float | None
    retries: int
    retry_backoff: float
    #: Whether the sign-up form offers the broken address.
    broken: bool


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
nav a { margin-right: 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
form { border: 1px solid #ddd; border-radius: 6px; padding: 0.8rem 1rem; margin: 1rem 0; }
input[type=email] { width: 16rem; } input[type=number] { width: 5rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.2rem 0.5rem; border-bottom: 1px solid #eee; }
.modes { display: flex; gap: 1rem; }
.mode { flex: 1; border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; }
.mode strong { font-size: 1.5rem; display: block; }
.note { color: #666; font-size: 0.9rem; }
.status { color: #666; }
progress { width: 20rem; height: 1.2rem; vertical-align: middle; }
.error { border-left: 4px solid #c33; padding-left: 1rem; }
pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        # No icon, said so: else browsers ask for /favicon.ico, a 404 in their console.
        '<link rel=icon href="data:,">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<nav><a href="/">Home</a><a href="/inbox">Inbox</a><a href="/stats">Stats (JSON)</a>'
        f'<a href="{DASHBOARD}/">Dashboard</a>'
        f"</nav>{body}</body></html>\n"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _dashboard_link(page: str, text: str) -> str:
    return f'<a href="{DASHBOARD}/{page}">{escape(text)}</a>'


def _job_link(job: Job[Any], status_url: StatusURL) -> str:
    """A job's id, linked to its status (JSON), its status now, and its dashboard page."""
    return (
        f'<a class=job href="{escape(status_url(job.id))}">{escape(job.id)}</a>: '
        f"<span class=status>{escape(job.status.value)}</span> "
        f'(<a class=dashboard href="{DASHBOARD}/jobs/{quote(job.id, safe="")}">dashboard</a>)'
    )


def _forms(features: Features) -> str:
    inline = (
        "<label><input type=checkbox name=mode value=inline> run it inline "
        "(the page waits for the mail, as without backburner)</label>"
    )
    broken = ""
    if features.broken:
        broken = (
            "<br><label><input type=checkbox name=broken value=on> send it to a broken address "
            f"(@{BROKEN_DOMAIN}: the mail service refuses it, so the job fails and is "
            "retried)</label>"
        )
    return (
        "<h2>Sign up</h2>"
        '<form method=post action="/signup">'
        '<input type=email name=email required placeholder="ada@example.com"> '
        f"<button>Sign up</button><br>{inline}{broken}</form>"
        "<h2>FibTastic</h2>"
        '<form method=post action="/fibtastic">'
        '<input type=email name=email required placeholder="ada@example.com"> '
        f"<input type=number name=n min=1 max={MAX_FIBONACCI} value=10> Fibonacci numbers "
        "(0, 1, 1, 2, 3, ...) "
        f"<button>Email them to me</button><br>{inline}</form>"
    )


def _comparison(recent: RecentRequests) -> str:
    boxes = []
    for mode in MODES:
        summary = recent.summary(mode)
        boxes.append(
            f"<div class=mode>{mode}<strong>{_ms(summary.last_ms)}</strong>"
            f"<span class=note>median {_ms(summary.median_ms)} over the last "
            f"{summary.requests} request(s)</span></div>"
        )
    return "<h2>Response times</h2><div class=modes>" + "".join(boxes) + "</div>"


def _jobs_of(record: RequestRecord) -> list[tuple[str, Job[Any]]]:
    """The jobs a request made, each with what it does."""
    first = "welcome" if record.kind == "sign-up" else "numbers"
    jobs = [(first, record.job)] if record.job is not None else []
    if record.reminder is not None:
        jobs.append(("reminder", record.reminder))
    return jobs


def _recent_table(records: Iterable[RequestRecord], status_url: StatusURL) -> str:
    rows = []
    for record in records:
        what = record.kind + (f" (N={record.count})" if record.count else "")
        jobs = "<br>".join(
            f"{label} {_job_link(job, status_url)}" for label, job in _jobs_of(record)
        )
        rows.append(
            f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(record.at))}</td>"
            f"<td>{escape(what)}</td><td>{escape(record.address)}</td><td>{record.mode}</td>"
            f"<td>{_ms(record.elapsed_ms)}</td><td>{jobs or '-'}</td></tr>"
        )
    if not rows:
        return "<p class=note>No requests yet: use a form above.</p>"
    return (
        "<table><tr><th>at</th><th>what</th><th>to</th><th>mode</th><th>response time</th>"
        "<th>jobs</th></tr>" + "".join(rows) + "</table>"
    )


def _on_their_own(features: Features) -> str:
    """The jobs no form waits for, and where the dashboard shows them."""
    items = []
    if features.digest_every is not None:
        items.append(
            f"Every {_seconds(features.digest_every)}, a periodic job mails a digest of the "
            f"new sign-ups to {escape(features.digest_to)} "
            f"({_dashboard_link('periodic', 'periodic jobs')})."
        )
    if features.reminder_delay is not None:
        items.append(
            f"{_seconds(features.reminder_delay)} after a sign-up in the background, a job "
            "scheduled with <code>enqueue_in</code> mails a reminder "
            f"({_dashboard_link('scheduled', 'scheduled jobs')})."
        )
    if features.broken:
        backoff = features.retry_backoff
        items.append(
            f"A welcome email to the broken address fails, is retried {features.retries} "
            f"times (after {_seconds(backoff)}, then about {_seconds(2 * backoff)}), then "
            f"waits on the {_dashboard_link('dead', 'dead list')} for a retry by hand "
            f"({_dashboard_link('retries', 'retries')} shows it in between)."
        )
    items.append(
        "Each job id below opens the job's status, as JSON from the status app (<code>"
        f"{STATUS}/&lt;id&gt;</code>, a link signed for an hour); beside it, the job's page on "
        f"the {_dashboard_link('', 'dashboard')}."
    )
    return "<h2>On the dashboard</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _stats_table(stats: Mapping[str, Any]) -> str:
    columns = ("workers", "busy", "idle", "pending", "processed", "failed", "cancelled")
    head = "".join(f"<th>{column}</th>" for column in columns)
    rows = [*stats["queues"].values(), stats["total"]]
    body = "".join(
        f"<tr><td>{escape(str(row['name']))}</td>"
        + "".join(f"<td>{escape(str(row[column]))}</td>" for column in columns)
        + "</tr>"
        for row in rows
    )
    return f"<h2>Queues</h2><table><tr><th>queue</th>{head}</tr>{body}</table>"


def home_page(
    recent: RecentRequests,
    stats: Mapping[str, Any],
    mail_delay: float,
    features: Features,
    status_url: StatusURL,
) -> str:
    """The forms, the jobs that run on their own, the two modes' response times, the recent
    requests and the queues."""
    return _page(
        "backburner demo",
        "<h1>backburner demo</h1>"
        "<p>Both forms send real email, through a pretend third-party mail service that takes "
        f"{mail_delay * 1000:.0f} ms to answer. In the background (the default) the page "
        "answers at once and a job sends the mail; inline, the page waits for it. Caught mail "
        'shows in the <a href="/inbox">inbox</a>.</p>'
        + _forms(features)
        + _on_their_own(features)
        + _comparison(recent)
        + "<h2>Recent requests</h2>"
        + _recent_table(recent.newest_first(), status_url)
        + _stats_table(stats),
    )


def sent_page(
    record: RequestRecord | None,
    recent: RecentRequests,
    features: Features,
    status_url: StatusURL,
) -> str:
    """Where a form redirects: what was sent, how, how long the answer took, what follows."""
    if record is None:
        title, lead = "Sent", "<p>Your email is on its way.</p>"
    else:
        address = escape(record.address)
        took = f"<strong>{_ms(record.elapsed_ms)}</strong>"
        if record.kind == "sign-up":
            title, plural = "Welcome aboard!", False
            what = f"Welcome, {address}! Your welcome email"
        else:
            title, plural = "FibTastic!", True
            what = f"Your {record.count} Fibonacci numbers for {address}"
        if record.mode == "background":
            verb = "are" if plural else "is"
            how = f"{what} {verb} being sent by a background job: this page took only {took}."
        else:
            verb = "were" if plural else "was"
            how = f"{what} {verb} sent inline, before answering: this page took {took}."
        lead = f'<p>{how} See the <a href="/inbox">inbox</a>.</p>' + _what_follows(
            record, features, status_url
        )
    return _page(
        title,
        f"<h1>{escape(title)}</h1>{lead}"
        + _comparison(recent)
        + "<h2>Recent requests</h2>"
        + _recent_table(recent.newest_first(), status_url)
        + '<p><a href="/">Send another</a></p>',
    )


def _what_follows(record: RequestRecord, features: Features, status_url: StatusURL) -> str:
    if record.job is None:
        return ""
    if record.kind == "fibtastic":
        return _progress_bar(record.job, record.count, status_url)
    if record.address.endswith(f"@{BROKEN_DOMAIN}"):
        return (
            "<p>That is the broken address: the mail service refuses it, so the job fails, "
            f"is retried {features.retries} times, then waits on the "
            f"{_dashboard_link('dead', 'dead list')} (job {_job_link(record.job, status_url)}).</p>"
        )
    if record.reminder is not None and features.reminder_delay is not None:
        return (
            f"<p>A reminder follows in {_seconds(features.reminder_delay)} "
            f"(job {_job_link(record.reminder, status_url)}).</p>"
        )
    return ""


# The page listens to the job's events (the status app's Server-Sent Events) and moves the bar;
# the URL comes in a data attribute, escaped like any value, never pasted into the script.
_PROGRESS_SCRIPT = """
(() => {
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  const eta = document.getElementById("progress-eta");
  const source = new EventSource(bar.dataset.events);
  const show = (event) => {
    const job = JSON.parse(event.data);
    if (job === null) { text.textContent = "no longer known"; eta.textContent = ""; return; }
    const progress = job.progress;
    bar.dataset.status = job.status;
    if (progress !== null) {
      if (progress.total !== null) bar.max = progress.total;
      bar.value = progress.done;
      text.textContent = progress.message ?? String(progress.done);
    } else if (job.status === "pending") {
      text.textContent = "waiting for a worker (" + job.position + " ahead)";
    }
    const left = progress === null ? null : progress.eta;
    eta.textContent = job.finished || left === null ? "" : "about " + Math.ceil(left) + " s left";
    if (job.finished) {
      text.textContent = job.status === "succeeded" ? "done: the email is on its way" : job.status;
    }
  };
  source.addEventListener("status", show);
  source.addEventListener("progress", show);
  source.addEventListener("end", (event) => { source.close(); show(event); });
})();
"""


def _progress_bar(job: Job[Any], count: int, status_url: StatusURL) -> str:
    """A bar that follows the job's progress live, with its ETA (Server-Sent Events)."""
    events = status_url(job.id).replace("?", "/events?", 1)
    return (
        "<h2>Progress</h2>"
        f'<p><progress id=progress max={count} value=0 data-events="{escape(events)}"></progress> '
        "<span id=progress-text>starting</span> <span id=progress-eta class=note></span></p>"
        f"<p class=note>Job {_job_link(job, status_url)}: it reports each number with "
        "<code>current_job().set_progress(...)</code>; the bar listens to its events.</p>"
        f"<script>{_PROGRESS_SCRIPT}</script>"
    )


def inbox_page(messages: list[CaughtMail], caught: int, smtp: str) -> str:
    """The caught mail, newest first."""
    items = []
    for mail in messages:
        at = time.strftime("%H:%M:%S", time.localtime(mail.received_at))
        items.append(
            f"<details><summary>{at} <strong>{escape(mail.subject)}</strong> to "
            f"{escape(', '.join(mail.to))}</summary>"
            f"<p class=note>from {escape(mail.mail_from)}</p>"
            f"<pre>{escape(mail.body)}</pre></details>"
        )
    listing = "".join(items) or "<p class=note>Nothing caught yet.</p>"
    return _page(
        "Inbox",
        f"<h1>Inbox</h1><p class=note>{caught} message(s) caught by the SMTP server on "
        f'{escape(smtp)}; the newest {len(messages)} shown. Also as <a href="/inbox.json">'
        f"JSON</a>.</p>{listing}",
    )


def error_page(status: int, message: str) -> str:
    """A refused request, and why."""
    return _page(
        f"Error {status}",
        f"<h1>That did not work</h1><p class=error>{escape(message)}</p>"
        '<p><a href="/">Back to the forms</a></p>',
    )
