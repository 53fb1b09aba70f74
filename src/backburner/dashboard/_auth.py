"""Who may see the dashboard: HTTP Basic, a callable of the request, or loopback clients only.

There is no default that lets anyone in: a dashboard built without ``auth`` answers 403 to
every request, unless ``insecure_local=True`` asks for loopback clients only (development).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

__all__ = ["AuthCallable", "BasicAuth", "Guard", "Verdict"]

logger = logging.getLogger("backburner")

#: ``auth=`` may be any callable taking the request and returning (or awaiting to) a bool.
AuthCallable = Callable[[Request], "bool | Awaitable[bool]"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
# A proxy on the same host makes every client look local: refuse what a proxy may add. (A
# proxy that adds none of these, as nginx's bare proxy_pass, cannot be told from a browser.)
_PROXY_HEADERS = (
    "forwarded",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "true-client-ip",
)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP Basic credentials, compared in constant time: ``BasicAuth("admin", "s3cret")``.

    Browsers send Basic credentials only over the connection's own origin; serve the
    dashboard over HTTPS anywhere but on your own machine.
    """

    username: str
    password: str = field(repr=False)
    #: The realm the browser's login prompt shows.
    realm: str = "backburner"

    def __post_init__(self) -> None:
        for name in ("username", "password", "realm"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TypeError(f"BasicAuth {name} must be a non-empty str, got {value!r}")
        if ":" in self.username:
            raise ValueError("a Basic auth username cannot contain ':' (RFC 7617)")
        if '"' in self.realm or "\\" in self.realm:
            raise ValueError("the realm cannot contain '\"' or '\\\\'")

    def check(self, header: str | None) -> bool:
        """True if the ``Authorization`` header carries these credentials."""
        if header is None:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, colon, password = decoded.partition(":")
        # Both compared every time, so the time taken says nothing about which one was wrong.
        user_ok = secrets.compare_digest(username.encode(), self.username.encode())
        password_ok = secrets.compare_digest(password.encode(), self.password.encode())
        return bool(colon) and user_ok & password_ok


@dataclass(frozen=True, slots=True)
class Verdict:
    """An authentication refusal: the status, the message and any header to send."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class Guard:
    """Decides, for each request, whether it may see the dashboard."""

    def __init__(
        self,
        auth: BasicAuth | tuple[str, str] | AuthCallable | None,
        insecure_local: bool,
    ) -> None:
        if not isinstance(insecure_local, bool):
            raise TypeError(f"insecure_local must be a bool, got {insecure_local!r}")
        if auth is not None and insecure_local:
            raise ValueError(
                "give either auth=... or insecure_local=True, not both: insecure_local serves "
                "loopback clients with no credentials at all"
            )
        if isinstance(auth, tuple):
            if len(auth) != 2:
                raise TypeError(f"auth=(username, password) takes two strings, got {auth!r}")
            auth = BasicAuth(*auth)
        if auth is not None and not isinstance(auth, BasicAuth) and not callable(auth):
            raise TypeError(
                "auth must be (username, password), a BasicAuth, or a callable taking the "
                f"request and returning a bool, got {type(auth).__name__}"
            )
        self.auth = auth
        self.insecure_local = insecure_local
        if insecure_local:
            logger.warning(
                "the dashboard is served with insecure_local=True: no credentials, for any "
                "client connecting from this machine. A reverse proxy on this machine that "
                "adds no forwarding header makes every client look local: never deploy it so"
            )

    async def refuse(self, request: Request) -> Verdict | None:
        """None if the request may go on; else why not."""
        if self.insecure_local:
            return _loopback_only(request)
        if isinstance(self.auth, BasicAuth):
            if self.auth.check(request.headers.get("authorization")):
                return None
            challenge = f'Basic realm="{self.auth.realm}", charset="UTF-8"'
            return Verdict(401, "Sign in to see the dashboard.", {"WWW-Authenticate": challenge})
        if self.auth is not None:
            return await _ask(self.auth, request)
        return Verdict(
            403,
            "The dashboard has no authentication configured, so it lets no one in. Mount it "
            "with dashboard(auth=(user, password)), auth=<callable(request) -> bool>, or, on "
            "your own machine only, insecure_local=True.",
        )


def _loopback_only(request: Request) -> Verdict | None:
    client = request.client.host if request.client else None
    if client not in _LOOPBACK:
        return Verdict(403, "This dashboard serves only this machine (insecure_local=True).")
    if any(name in request.headers for name in _PROXY_HEADERS):
        return Verdict(
            403,
            "This dashboard serves only this machine (insecure_local=True), and this request "
            "came through a proxy: configure auth=... to serve it there.",
        )
    return None


async def _ask(auth: AuthCallable, request: Request) -> Verdict | None:
    try:
        answer = auth(request)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception:
        logger.exception("the dashboard's auth callable failed; the request was refused")
        return Verdict(403, "Not allowed (the authentication check failed).")
    if answer is True:
        return None
    if answer is not False:
        logger.error(
            "the dashboard's auth callable returned %r, not a bool; the request was refused",
            answer,
        )
    return Verdict(403, "Not allowed.")
