"""A mail catcher: an SMTP server (aiosmtpd) on the app's own event loop that keeps what it gets.

Like mailcatcher or MailHog, it delivers nothing: every message lands in a ``Mailbox``, which
``/inbox`` shows. It runs on the same event loop as the app, so the app's lifespan starts and
stops it, and a page can wait for a message to arrive (``Mailbox.wait_for``). Like a real mail
service, it refuses some recipients: those at the ``refused_domains`` it is given (the demo's
broken address), with SMTP's 550.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["CaughtMail", "MailCatcher", "Mailbox"]

logger = logging.getLogger("demo_app")

_parser = BytesParser(_class=EmailMessage, policy=default_policy)


@dataclass(frozen=True, slots=True)
class CaughtMail:
    """One message the catcher received."""

    id: int
    received_at: float  # time.time()
    mail_from: str
    to: tuple[str, ...]
    subject: str
    body: str

    def as_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict."""
        return {
            "id": self.id,
            "received_at": self.received_at,
            "from": self.mail_from,
            "to": list(self.to),
            "subject": self.subject,
            "body": self.body,
        }


class Mailbox:
    """The newest ``keep`` caught messages, and a way to wait for one."""

    def __init__(self, keep: int = 200) -> None:
        self._messages: deque[CaughtMail] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        # Futures of the tasks waiting for mail: made by each waiter on its own (the app's)
        # event loop, so a Mailbox is bound to no loop and outlives the app's runs.
        self._waiters: set[asyncio.Future[None]] = set()
        #: How many messages were caught in all, including those no longer kept.
        self.caught = 0

    def messages(self, to: str | None = None) -> list[CaughtMail]:
        """The kept messages, newest first; only those sent to ``to`` if given."""
        wanted = None if to is None else to.casefold()
        return [
            mail
            for mail in reversed(self._messages)
            if wanted is None or wanted in (address.casefold() for address in mail.to)
        ]

    async def wait_for(self, to: str | None) -> None:
        """Wait until a message sent to ``to`` (any message, if None) is kept."""
        while not self.messages(to):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)

    def add(self, mail_from: str, to: tuple[str, ...], content: bytes) -> CaughtMail:
        """Keep a message that arrived, and wake whoever waits for one (on the loop's thread)."""
        message = _parser.parsebytes(content)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        mail = CaughtMail(
            id=next(self._ids),
            received_at=time.time(),
            mail_from=mail_from,
            to=to,
            subject=str(message.get("Subject", "")),
            body=str(text).replace("\r\n", "\n"),
        )
        self._messages.append(mail)
        self.caught += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        return mail


class _Handler:
    """aiosmtpd's handler: refuses recipients at ``refused_domains``; messages go to the mailbox."""

    def __init__(self, mailbox: Mailbox, refused_domains: Collection[str]) -> None:
        self.mailbox = mailbox
        self.refused_domains = frozenset(domain.casefold() for domain in refused_domains)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.rpartition("@")[2].casefold() in self.refused_domains:
            logger.info("mail catcher: refused mail to %s", address)
            return f"550 5.1.2 {address}: no such domain here (the demo's broken address)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        if isinstance(content, str):
            content = content.encode()
        mail = self.mailbox.add(envelope.mail_from or "", tuple(envelope.rcpt_tos), content or b"")
        logger.info(
            "mail catcher: caught mail %d to %s: %s", mail.id, ", ".join(mail.to), mail.subject
        )
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server on ``host``:``port`` (0: a free port) that fills ``mailbox``.

    It refuses every recipient at ``refused_domains`` (with 550, "no such domain").
    """

    def __init__(
        self,
        mailbox: Mailbox,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        refused_domains: Collection[str] = (),
    ) -> None:
        self.mailbox = mailbox
        self.refused_domains = tuple(refused_domains)
        self.host = host
        #: The port asked for; once started, the port it listens on.
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; from now on ``port`` is the real port."""
        loop = asyncio.get_running_loop()
        handler = _Handler(self.mailbox, self.refused_domains)
        self._server = await loop.create_server(
            # hostname given: aiosmtpd would otherwise look up socket.getfqdn(), maybe slowly.
            lambda: SMTP(handler, hostname="localhost", ident="backburner demo", loop=loop),
            self.host,
            self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and close the server."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
