"""Signed status URLs: an HMAC-SHA256 of a job's id and an expiry, for clients with no session.

A signed URL carries ``?expires=<unix seconds>&sig=<base64url HMAC>``. The MAC covers a fixed
label, the job id and the expiry, so a signature for one job opens no other, and a changed
expiry breaks it. It is checked in constant time. The expiry is read on the app's clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from urllib.parse import urlencode

__all__ = ["MIN_SECRET_BYTES", "URLSigner"]

#: The shortest secret taken: 256 bits, as many as the MAC has.
MIN_SECRET_BYTES = 32
# What the MAC covers starts with this, so a MAC made with the same secret for something else
# (a session cookie, say) is never a valid status signature.
_LABEL = b"backburner-status-v1\x00"
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class URLSigner:
    """Signs and checks ``(job id, expiry)`` pairs with one secret."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        if isinstance(secret, str):
            key = secret.encode("utf-8")
        elif isinstance(secret, bytes):
            key = secret
        else:
            raise TypeError(
                f"secret must be a str or bytes of at least {MIN_SECRET_BYTES} bytes, got "
                f"{type(secret).__name__}"
            )
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"secret is {len(key)} bytes: signed status URLs need at least "
                f"{MIN_SECRET_BYTES} bytes of randomness; make one with {_MAKE_ONE} and keep it "
                "out of the source (an environment variable, a secrets manager)"
            )
        self._key = key

    def __repr__(self) -> str:
        return "<URLSigner secret=***>"

    def signature(self, job_id: str, expires: int) -> str:
        """The base64url MAC of ``job_id`` valid until ``expires`` (Unix seconds)."""
        message = _LABEL + job_id.encode("utf-8", "surrogatepass") + b"\x00" + b"%d" % expires
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def query(self, job_id: str, now: float, expires_in: float) -> str:
        """``expires=...&sig=...`` for ``job_id``, valid ``expires_in`` seconds from ``now``."""
        if not isinstance(job_id, str) or not job_id:
            raise TypeError(f"job_id must be a non-empty str, got {job_id!r}")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
            raise TypeError(f"expires_in must be a number of seconds, got {expires_in!r}")
        if not (math.isfinite(expires_in) and expires_in > 0):
            raise ValueError(f"expires_in must be a finite number of seconds > 0, got {expires_in}")
        expires = math.ceil(now + expires_in)
        return urlencode({"expires": expires, "sig": self.signature(job_id, expires)})

    def refusal(self, job_id: str, expires: str | None, sig: str | None, now: float) -> str | None:
        """None if ``sig`` signs ``job_id`` until ``expires`` and that is not past; else why not."""
        if not expires or not sig:
            return "a signed status URL needs both expires= and sig="
        # Digits only (no sign, no spaces, no underscores int() would take), bounded.
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return "expires= is not a time in Unix seconds"
        expected = self.signature(job_id, int(expires))
        # Both as bytes: compare_digest refuses non-ASCII str, and a MAC is never one.
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass")):
            return "the signature does not match this job and expiry"
        if now > int(expires):
            return f"this signed status URL expired (at {expires}); ask for a new one"
        return None
