"""The demo app: sign-up and FibTastic, each in background or inline mode, with their mail caught.

Besides the forms' jobs, the demo runs jobs that fill the rest of the dashboard: a periodic
digest of the sign-ups (every ``digest_every`` seconds), a reminder scheduled
``reminder_delay`` seconds after each sign-up, and, for a sign-up sent to the broken address,
a welcome email that fails, is retried with backoff, then lands on the dead list.

Routes::

    GET  /             the forms, both modes' response times, recent requests, queues
    POST /signup       email=...  [mode=inline]  [broken=on]   → 303 /welcome?r=ID
    POST /fibtastic    email=...  n=1..500  [mode=inline]   → 303 /fibtastic/sent?r=ID
    GET  /inbox        caught mail, newest first (HTML)
    GET  /inbox.json   the same as JSON; ?to=ADDRESS filters, ?wait=SECONDS waits for a match
    GET  /stats        the executor's counters as JSON; ?wait=SECONDS first waits for idle
    /backburner/       backburner's dashboard (HTTP Basic: user ``demo``, the password given)
    /status/ID         a job's status as JSON, ID/events as Server-Sent Events: the links on
                       the pages are signed (backburner.status, with a secret made at start)

Each form redirect carries a ``Server-Timing`` header with the handler's own time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiosmtplib
import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from backburner import (
    BackburnerMiddleware,
    BrokerUnavailable,
    Clock,
    NotRunning,
    Periodic,
    QueueConfig,
    QueueFull,
    background,
)
from backburner.dashboard import dashboard
from backburner.status import status_app

from . import pages
from .digest import DIGEST_TO, Digest
from .forms import parse_address, parse_broken, parse_count, parse_mode, read_form
from .jobs import (
    BROKEN_DOMAIN,
    WELCOME_RETRIES,
    MailSettings,
    broken_address,
    fibtastic,
    fibtastic_message,
    send_mail,
    send_reminder,
    send_welcome,
)
from .mailcatcher import Mailbox, MailCatcher
from .recent import RecentRequests, RequestRecord

__all__ = ["Demo", "create_app"]

logger = logging.getLogger("demo_app")

#: The longest ``?wait=`` a JSON endpoint accepts, in seconds.
MAX_WAIT = 30.0
#: The dashboard's user name; its password is given, or made up at each start.
DASHBOARD_USER = "demo"
#: The periodic digest's name, on the dashboard's periodic page.
DIGEST_NAME = "digest"


class Demo:
    """The demo's state (mailbox, mail catcher, recent requests) and its endpoints.

    ``Demo(...).app`` is the ASGI app; ``create_app(...)`` returns just that. ``digest_every``
    and ``reminder_delay`` are seconds, or None for no digest or no reminders; a failed
    welcome email is retried after ``retry_backoff`` seconds, then twice that. ``clock`` is
    the executor's (tests give a ``backburner.testing.ManualClock``).
    """

    def __init__(
        self,
        *,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 0,
        mail_delay: float = 0.2,
        workers: int = 4,
        mail_workers: int = 2,
        engine: str | None = None,
        max_pending: int = 10_000,
        shutdown_timeout: float = 8.0,
        dashboard_password: str | None = None,
        digest_every: float | None = 60.0,
        reminder_delay: float | None = 30.0,
        retry_backoff: float = 2.0,
        fib_step: float = 0.05,
        clock: Clock | None = None,
    ) -> None:
        if mail_delay < 0:
            raise ValueError(f"mail_delay must be 0 or more seconds, got {mail_delay}")
        if digest_every is not None and not digest_every > 0:
            raise ValueError(f"digest_every must be more than 0 seconds, got {digest_every}")
        if reminder_delay is not None and not reminder_delay >= 0:
            raise ValueError(f"reminder_delay must be 0 or more seconds, got {reminder_delay}")
        if not retry_backoff >= 0:
            raise ValueError(f"retry_backoff must be 0 or more seconds, got {retry_backoff}")
        if not 0 <= fib_step <= 1:
            raise ValueError(f"fib_step must be from 0 to 1 second, got {fib_step}")
        self.fib_step = fib_step
        self.mail_delay = mail_delay
        self.retry_backoff = retry_backoff
        self.mailbox = Mailbox()
        self.catcher = MailCatcher(
            self.mailbox, smtp_host, smtp_port, refused_domains=(BROKEN_DOMAIN,)
        )
        self.recent = RecentRequests()
        self._mail: MailSettings | None = None
        self.digest = Digest(lambda: self.mail)
        #: The dashboard's password (user ``demo``): a random one unless given.
        self.dashboard_password = dashboard_password or secrets.token_urlsafe(12)
        # Links to a job's status are signed with a secret of this process: anyone given one
        # sees that job (and no other) for an hour, with no account.
        self.statuses = status_app(secret=secrets.token_bytes(32))
        self.app = Starlette(
            routes=[
                Route("/", self.home),
                Route("/signup", self.signup, methods=["POST"]),
                Route("/welcome", self.sent),
                Route("/fibtastic", self.fibtastic, methods=["POST"]),
                Route("/fibtastic/sent", self.sent),
                Route("/inbox", self.inbox),
                Route("/inbox.json", self.inbox_json),
                Route("/stats", self.stats),
                Mount(pages.STATUS, self.statuses),
                Mount(
                    pages.DASHBOARD,
                    dashboard(auth=(DASHBOARD_USER, self.dashboard_password), title="demo jobs"),
                ),
            ],
            exception_handlers={
                HTTPException: self.http_error,
                QueueFull: self.unavailable,
                BrokerUnavailable: self.unavailable,
                NotRunning: self.unavailable,
            },
            lifespan=self.lifespan,
        )
        # BACKBURNER_ENGINE=redis: the jobs go through Redis to a separate `taskiq worker`.
        self.engine = engine if engine is not None else os.environ.get("BACKBURNER_ENGINE", "local")
        if self.engine not in ("local", "redis"):
            raise ValueError(f"BACKBURNER_ENGINE is 'local' or 'redis', got {self.engine!r}")
        remote_engine = None
        if self.engine == "redis":
            from . import remote

            remote_engine = remote.engine
            logger.info(
                "jobs go through Redis at %s to: taskiq worker demo_app.remote:broker",
                remote.REDIS_URL,
            )
            # The digest reads this process's sign-ups, and a remote job's retries and dead
            # list are the worker's: these show the local executor only.
            digest_every = reminder_delay = None
            logger.info("on Redis, the demo has no digest, reminders or broken address")
        self.digest_every = digest_every
        self.reminder_delay = reminder_delay
        periodic = []
        if digest_every is not None:
            periodic.append(Periodic(self.digest.send, every=digest_every, name=DIGEST_NAME))
        self.app.add_middleware(
            BackburnerMiddleware,
            workers=workers,
            max_pending=max_pending,
            queues={"mail": QueueConfig(workers=mail_workers, max_pending=max_pending)},
            shutdown_timeout=shutdown_timeout,
            periodic=periodic,
            clock=clock,
            engine=remote_engine,
        )

    @property
    def mail(self) -> MailSettings:
        """Where jobs send mail: known once the mail catcher listens."""
        if self._mail is None:
            raise RuntimeError("the mail catcher has not started: run the app with its lifespan")
        return self._mail

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Run the mail catcher for as long as the app runs.

        ``BackburnerMiddleware`` starts running jobs after this startup and drains them before
        this shutdown, so every job sends its mail while the catcher still listens.
        """
        await self.catcher.start()
        self._mail = MailSettings(self.catcher.host, self.catcher.port, self.mail_delay)
        logger.info(
            "mail catcher: SMTP on %s:%d, mail service delay %.0f ms",
            self.catcher.host,
            self.catcher.port,
            self.mail_delay * 1000,
        )
        try:
            yield
        finally:
            await self.catcher.aclose()
            logger.info("mail catcher: stopped after catching %d message(s)", self.mailbox.caught)

    # The forms.

    @property
    def features(self) -> pages.Features:
        """What the pages tell of the jobs that run on their own."""
        return pages.Features(
            digest_every=self.digest_every,
            digest_to=DIGEST_TO,
            reminder_delay=self.reminder_delay,
            retries=WELCOME_RETRIES,
            retry_backoff=self.retry_backoff,
            broken=self.engine == "local",
        )

    async def signup(self, request: Request) -> Response:
        """Send a welcome email to the address in the form, in the background or inline.

        In the background, a reminder follows ``reminder_delay`` seconds later; with
        ``broken=on`` the email goes to the broken address instead, and no reminder.
        """
        started = time.perf_counter()
        form = await read_form(request)
        address, mode = parse_address(form), parse_mode(request, form)
        broken = parse_broken(form)
        if broken:
            if self.engine != "local":
                raise HTTPException(
                    400,
                    "the broken address shows this process's retries and dead list: it needs "
                    "BACKBURNER_ENGINE=local",
                )
            address = broken_address(address)
        if mode == "background" and self.engine == "redis":
            from .remote import send_welcome_remote

            mail = self.mail
            sent = await background.aenqueue(
                send_welcome_remote, mail.host, mail.port, mail.delay, address
            )
            record = self.recent.add("sign-up", address, mode, started, job=sent)
        elif mode == "background":
            # @job on send_welcome gives its queue and retries; the backoff is the demo's.
            job = background.options(backoff=self.retry_backoff).enqueue(
                send_welcome, self.mail, address
            )
            reminder = None
            if self.reminder_delay is not None and not broken:
                reminder = background.enqueue_in(
                    self.reminder_delay, send_reminder, self.mail, address
                )
            record = self.recent.add("sign-up", address, mode, started, job=job, reminder=reminder)
        else:
            try:
                await send_welcome(self.mail, address)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refusals = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                raise HTTPException(
                    502,
                    f"The mail service refused the welcome email: {refusals}. Inline, the "
                    "request fails with it; in the background, a job would have retried it, "
                    "then kept it on the dead list.",
                ) from None
            record = self.recent.add("sign-up", address, mode, started)
        self.digest.add(address)
        return _redirect(f"/welcome?r={record.id}", record)

    async def fibtastic(self, request: Request) -> Response:
        """Email the first N Fibonacci numbers to the address in the form."""
        started = time.perf_counter()
        form = await read_form(request)
        address, count = parse_address(form), parse_count(form)
        mode = parse_mode(request, form)
        if mode == "background" and self.engine == "redis":
            from .remote import fibtastic_remote

            mail = self.mail
            sent = await background.aenqueue(
                fibtastic_remote, mail.host, mail.port, mail.delay, address, count
            )
            record = self.recent.add("fibtastic", address, mode, started, count=count, job=sent)
        elif mode == "background":
            job = background.enqueue(fibtastic, self.mail, address, count, self.fib_step)
            record = self.recent.add("fibtastic", address, mode, started, count=count, job=job)
        else:
            await send_mail(self.mail, fibtastic_message(address, count))
            record = self.recent.add("fibtastic", address, mode, started, count=count)
        return _redirect(f"/fibtastic/sent?r={record.id}", record)

    # The pages.

    async def home(self, request: Request) -> Response:
        """The forms and what happened so far."""
        stats = background.stats().as_dict()
        return HTMLResponse(
            pages.home_page(self.recent, stats, self.mail_delay, self.features, self.status_url)
        )

    async def sent(self, request: Request) -> Response:
        """Where the forms redirect: ``?r=`` names the request."""
        raw = request.query_params.get("r", "")
        record = self.recent.get(int(raw)) if raw.isascii() and raw.isdecimal() else None
        return HTMLResponse(pages.sent_page(record, self.recent, self.features, self.status_url))

    def status_url(self, job_id: str) -> str:
        """Where a job's status is, signed for an hour: what each job id on the pages links to."""
        query = self.statuses.sign(job_id, expires_in=3600)
        return f"{pages.STATUS}/{quote(job_id, safe='')}?{query}"

    async def inbox(self, request: Request) -> Response:
        """The caught mail, newest first."""
        smtp = f"{self.catcher.host}:{self.catcher.port}"
        return HTMLResponse(pages.inbox_page(self.mailbox.messages(), self.mailbox.caught, smtp))

    async def inbox_json(self, request: Request) -> Response:
        """The caught mail as JSON, newest first; ``?to=`` filters, ``?wait=`` waits for one."""
        to = request.query_params.get("to") or None
        wait = _wait_seconds(request)
        if isinstance(wait, Response):
            return wait
        if wait:
            with anyio.move_on_after(wait):
                await self.mailbox.wait_for(to)
        messages = [mail.as_dict() for mail in self.mailbox.messages(to)]
        return JSONResponse({"caught": self.mailbox.caught, "messages": messages})

    async def stats(self, request: Request) -> Response:
        """The executor's counters; ``?wait=`` first waits (that long at most) for it to idle."""
        wait = _wait_seconds(request)
        if isinstance(wait, Response):
            return wait
        if wait:
            with anyio.move_on_after(wait):
                await background.join()
        return JSONResponse(background.stats().as_dict())

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Refusals as a small HTML page that says why."""
        assert isinstance(exc, HTTPException)
        return HTMLResponse(pages.error_page(exc.status_code, exc.detail), exc.status_code)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        """A full queue (``QueueFull``) or a server shutting down (``NotRunning``): 503."""
        reason = "shutting down"
        if isinstance(exc, QueueFull):
            reason = "too busy right now"
        elif isinstance(exc, BrokerUnavailable):
            reason = "cannot reach its job broker"
        message = f"The server is {reason}; try again in a moment. ({exc})"
        return HTMLResponse(pages.error_page(503, message), 503, headers={"Retry-After": "1"})


def _redirect(url: str, record: RequestRecord) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers["Server-Timing"] = f'app;dur={record.elapsed_ms:.3f};desc="{record.mode}"'
    return response


def _wait_seconds(request: Request) -> float | Response:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:  # also refuses nan
        return JSONResponse(
            {"error": f"wait must be a number of seconds from 0 to {MAX_WAIT:.0f}, got {raw!r}"},
            status_code=400,
        )
    return wait


def create_app(
    *,
    smtp_host: str = "127.0.0.1",
    smtp_port: int = 0,
    mail_delay: float = 0.2,
    workers: int = 4,
    mail_workers: int = 2,
    max_pending: int = 10_000,
    shutdown_timeout: float = 8.0,
    dashboard_password: str | None = None,
    digest_every: float | None = 60.0,
    reminder_delay: float | None = 30.0,
    retry_backoff: float = 2.0,
) -> Starlette:
    """The demo app. Its mail catcher listens on ``smtp_host:smtp_port`` (0: a free port).

    ``mail_delay`` is the pretend mail service's seconds per email; ``workers`` and
    ``mail_workers`` size the ``default`` and ``mail`` queues, which each hold at most
    ``max_pending`` waiting jobs. The dashboard at ``/backburner/`` takes user ``demo`` and
    ``dashboard_password`` (random if not given). Every ``digest_every`` seconds a periodic
    job mails a digest of the sign-ups; ``reminder_delay`` seconds after a sign-up, a
    scheduled job mails a reminder (None: no digest, no reminders); a failed welcome email is
    retried after ``retry_backoff`` seconds, then twice that.
    """
    return Demo(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        mail_delay=mail_delay,
        workers=workers,
        mail_workers=mail_workers,
        max_pending=max_pending,
        shutdown_timeout=shutdown_timeout,
        dashboard_password=dashboard_password,
        digest_every=digest_every,
        reminder_delay=reminder_delay,
        retry_backoff=retry_backoff,
    ).app
