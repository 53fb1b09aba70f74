"""The demo's jobs: compose and send mail through a (simulated) slow mail service.

The same functions serve both modes: a request in *background* mode enqueues them, a request
in *inline* mode calls them itself before answering, which is what the demo compares.

* ``send_welcome`` (async, queue ``mail``): the sign-up's welcome email.
* ``fibtastic`` (sync, so it runs in one of backburner's threads, queue ``default``): computes
  N Fibonacci numbers, then enqueues ``send_mail`` onto the ``mail`` queue: a job enqueuing
  its follow-up job through ``background``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from backburner import Job, background

__all__ = [
    "MAX_FIBONACCI",
    "MailSettings",
    "fibonacci",
    "fibtastic",
    "fibtastic_message",
    "send_mail",
    "send_welcome",
    "welcome_message",
]

#: The most Fibonacci numbers one request may ask for: the email stays small (about 50 kB).
MAX_FIBONACCI = 500

SENDER = "backburner demo <demo@backburner.invalid>"


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Where jobs send mail, and how slow the pretend third-party mail service is."""

    host: str
    port: int
    #: Seconds each send waits first, like a slow mail API would make us wait.
    delay: float = 0.2


def fibonacci(count: int) -> list[int]:
    """The first ``count`` Fibonacci numbers: 0, 1, 1, 2, 3, 5, ..."""
    numbers: list[int] = []
    current, following = 0, 1
    for _ in range(count):
        numbers.append(current)
        current, following = following, current + following
    return numbers


def welcome_message(address: str) -> EmailMessage:
    """The welcome email for a new sign-up."""
    return _message(
        address,
        "Welcome to the backburner demo",
        "Thanks for signing up!\n\n"
        "This email was sent by a job, beside the response that welcomed you.\n",
    )


def fibtastic_message(address: str, count: int) -> EmailMessage:
    """The FibTastic email: the first ``count`` Fibonacci numbers, one a line."""
    lines = "\n".join(str(number) for number in fibonacci(count))
    return _message(
        address,
        f"Your {count} Fibonacci numbers",
        f"Here are the first {count} Fibonacci numbers, as you asked:\n\n{lines}\n\nFibTastic\n",
    )


def _message(address: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = address
    message["Subject"] = subject
    message.set_content(body)
    return message


async def send_mail(settings: MailSettings, message: EmailMessage) -> None:
    """Send ``message`` by SMTP, after the pretend mail service's delay."""
    await asyncio.sleep(settings.delay)
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        local_hostname="localhost",  # not socket.getfqdn(): a DNS lookup per email
        start_tls=False,
        timeout=10,
    )


async def send_welcome(settings: MailSettings, address: str) -> None:
    """Send the welcome email to ``address``."""
    await send_mail(settings, welcome_message(address))


def fibtastic(settings: MailSettings, address: str, count: int) -> str:
    """Compute ``count`` Fibonacci numbers and enqueue their email; return the mail job's id.

    A plain function, so backburner runs it in a worker thread; ``background`` there still
    means the executor running this job.
    """
    mail_job: Job[None] = background.options(queue="mail").enqueue(
        send_mail, settings, fibtastic_message(address, count)
    )
    return mail_job.id
