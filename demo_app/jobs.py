"""The demo's jobs: compose and send mail through a (simulated) slow mail service.

The same functions serve both modes: a request in *background* mode enqueues them, a request
in *inline* mode calls them itself before answering, which is what the demo compares.

* ``send_welcome`` (async, queue ``mail``, 2 retries): the sign-up's welcome email. Sent to
  an address at ``BROKEN_DOMAIN`` (the mail service refuses them), it fails, is retried with
  backoff, then lands on the dead list.
* ``send_reminder`` (async, queue ``mail``): "did you finish signing up?", enqueued with
  ``enqueue_in`` when a sign-up is, to run some seconds later.
* ``fibtastic`` (sync, so it runs in one of backburner's threads, queue ``default``): computes
  N Fibonacci numbers, slowly enough to watch, reporting its progress after each with
  ``current_job().set_progress``, then enqueues ``send_mail`` onto the ``mail`` queue: a job
  enqueuing its follow-up job through ``background``.

The periodic digest of the sign-ups is in ``digest.py``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from backburner import Job, background, current_job, job

__all__ = [
    "BROKEN_DOMAIN",
    "MAX_FIBONACCI",
    "WELCOME_RETRIES",
    "MailSettings",
    "broken_address",
    "fibonacci",
    "fibtastic",
    "fibtastic_message",
    "reminder_message",
    "send_mail",
    "send_reminder",
    "send_welcome",
    "welcome_message",
]

#: The most Fibonacci numbers one request may ask for: the email stays small (about 50 kB).
MAX_FIBONACCI = 500

SENDER = "backburner demo <demo@backburner.invalid>"

#: The mail service refuses every address at this domain: the demo's broken address.
BROKEN_DOMAIN = "broken.invalid"

#: How many times a failed welcome email is tried again before it goes to the dead list.
WELCOME_RETRIES = 2


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


def reminder_message(address: str) -> EmailMessage:
    """The reminder sent some time after a sign-up."""
    return _message(
        address,
        "Did you finish signing up?",
        "You signed up a little while ago: did you finish?\n\n"
        "This email was sent by a job scheduled with enqueue_in when you signed up.\n",
    )


def broken_address(address: str) -> str:
    """``address`` moved to ``BROKEN_DOMAIN``, which the mail service refuses."""
    return f"{address.rpartition('@')[0]}@{BROKEN_DOMAIN}"


def fibtastic_message(address: str, count: int) -> EmailMessage:
    """The FibTastic email: the first ``count`` Fibonacci numbers, one a line."""
    return _numbers_message(address, fibonacci(count))


def _numbers_message(address: str, numbers: list[int]) -> EmailMessage:
    count = len(numbers)
    lines = "\n".join(str(number) for number in numbers)
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


# A mail service that refuses an address now may take it later (a full mailbox, a greylist):
# so a failed welcome email is tried again, after a backoff, before it is given up.
@job(queue="mail", retries=WELCOME_RETRIES)
async def send_welcome(settings: MailSettings, address: str) -> None:
    """Send the welcome email to ``address``."""
    await send_mail(settings, welcome_message(address))


@job(queue="mail")
async def send_reminder(settings: MailSettings, address: str) -> None:
    """Send the "did you finish signing up?" email to ``address``."""
    await send_mail(settings, reminder_message(address))


def fibtastic(settings: MailSettings, address: str, count: int, step: float = 0.0) -> str:
    """Compute ``count`` Fibonacci numbers and enqueue their email; return the mail job's id.

    A plain function, so backburner runs it in a worker thread; ``background`` there still
    means the executor running this job, and ``current_job()`` this job. Each number takes
    ``step`` seconds more (pretend work, long enough to watch the progress bar), and is
    reported with ``set_progress``: the status app streams it to the page that asked.
    """
    me = current_job()
    numbers: list[int] = []
    current, following = 0, 1
    for done in range(1, count + 1):
        numbers.append(current)
        current, following = following, current + following
        if step:
            time.sleep(step)  # in the job's own thread: the event loop is not held
        me.set_progress(done, count, f"{done} of {count} numbers")
    mail_job: Job[None] = background.options(queue="mail").enqueue(
        send_mail, settings, _numbers_message(address, numbers)
    )
    return mail_job.id
