"""The sign-up digest: a periodic job that mails the team the sign-ups since its last run.

The demo registers ``Digest.send`` as ``Periodic(digest.send, every=..., name="digest")``, so
it shows on the dashboard's periodic page, where "Run now" triggers it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from backburner import job

from .jobs import SENDER, MailSettings, send_mail

__all__ = ["DIGEST_TO", "Digest", "digest_message"]

#: Who gets the digest.
DIGEST_TO = "team@backburner.invalid"
#: The most addresses one digest lists; it counts the others.
MAX_LISTED = 50


@dataclass(slots=True)
class _Batch:
    """The sign-ups since the last digest: how many, and the first ``MAX_LISTED`` of them."""

    count: int = 0
    listed: list[tuple[float, str]] = field(default_factory=list)

    def add(self, at: float, address: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append((at, address))

    def merged(self, later: _Batch) -> _Batch:
        return _Batch(self.count + later.count, (self.listed + later.listed)[:MAX_LISTED])


def digest_message(count: int, listed: list[tuple[float, str]]) -> EmailMessage:
    """The digest of ``count`` sign-ups, listing ``listed`` (``time.time()``, address)."""
    lines = [f"  {time.strftime('%H:%M:%S', time.localtime(at))}  {to}" for at, to in listed]
    if count > len(listed):
        lines.append(f"  ... and {count - len(listed)} more")
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = DIGEST_TO
    message["Subject"] = f"Sign-up digest: {count} new sign-up{'s' if count != 1 else ''}"
    message.set_content(
        f"{count} sign-up(s) since the last digest:\n\n"
        + "\n".join(lines)
        + "\n\nSent by a periodic job: see the dashboard's periodic page.\n"
    )
    return message


class Digest:
    """Collects the sign-ups (``add``) that the periodic job ``send`` mails to ``DIGEST_TO``.

    All on the event loop's thread (requests add, the async job sends), so no locking.
    """

    def __init__(self, mail: Callable[[], MailSettings]) -> None:
        self._mail = mail  # known only once the mail catcher listens
        self._batch = _Batch()

    @property
    def waiting(self) -> int:
        """How many sign-ups the next digest will tell of."""
        return self._batch.count

    def add(self, address: str) -> None:
        """Count a sign-up for the next digest."""
        self._batch.add(time.time(), address)

    @job(queue="mail")
    async def send(self) -> str:
        """Mail the sign-ups since the last digest, if any; say what was done.

        What it returns shows on the job's dashboard page. If the mail cannot be sent, the
        sign-ups wait for the next digest.
        """
        batch, self._batch = self._batch, _Batch()
        if not batch.count:
            return "no new sign-ups: nothing to send"
        try:
            await send_mail(self._mail(), digest_message(batch.count, batch.listed))
        except BaseException:
            self._batch = batch.merged(self._batch)  # and those that came meanwhile
            raise
        return f"mailed a digest of {batch.count} sign-up(s) to {DIGEST_TO}"
