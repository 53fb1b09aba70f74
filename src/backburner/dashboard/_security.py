"""What every response carries, which hosts are served, and which POSTs are same-origin.

The rule for a mutating request (every one is a POST):

1. Its ``Host`` must be allowed (``allowed_hosts``; with ``insecure_local`` and no list, only
   ``localhost``, ``127.0.0.1`` and ``[::1]``, so a DNS-rebound name cannot reach it).
2. ``Sec-Fetch-Site``, if sent, must be ``same-origin`` (or ``none``: typed by the user).
3. ``Origin``, if sent, must be this server's own origin (``null`` never is).
4. If neither header was sent (an old browser, or a script), the request must carry the
   dashboard's CSRF token, in the ``X-Backburner-CSRF`` header or a ``csrf_token`` field.
   Pages hold the token; ``GET api/session`` gives it to scripts that are signed in.

Every browser of the last years sends ``Origin`` on a POST, and a cross-site page can
neither read the token nor set a custom header without a CORS preflight we never grant.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers

__all__ = ["SECURITY_HEADERS", "HostCheck", "csrf_refusal", "new_csrf_token"]

#: On every response, error pages and static files included.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

CSRF_HEADER = "x-backburner-csrf"
CSRF_FIELD = "csrf_token"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def new_csrf_token() -> str:
    """A fresh random token (one per dashboard, for as long as the process runs)."""
    return secrets.token_urlsafe(32)


class HostCheck:
    """Which ``Host`` headers are served: names, or ``*.example.com`` patterns, or any."""

    def __init__(self, allowed_hosts: Iterable[str] | None, insecure_local: bool) -> None:
        if isinstance(allowed_hosts, str):
            raise TypeError(
                f"allowed_hosts takes a list of host names, got the str {allowed_hosts!r}: "
                f"write allowed_hosts=[{allowed_hosts!r}]"
            )
        hosts: tuple[str, ...]
        if allowed_hosts is None:
            hosts = _LOCAL_HOSTS if insecure_local else ("*",)
        else:
            hosts = tuple(allowed_hosts)
            for host in hosts:
                if not isinstance(host, str) or not host:
                    raise TypeError(f"allowed_hosts holds host names (str), got {host!r}")
        self.hosts = tuple(host.lower().strip("[]") for host in hosts)

    def allows(self, host_header: str | None) -> bool:
        """True if this ``Host`` header names an allowed host (any port)."""
        if "*" in self.hosts:
            return True
        if not host_header:
            return False
        host = _hostname(host_header)
        if host is None:
            return False
        return any(
            host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
            for allowed in self.hosts
        )


def _hostname(host_header: str) -> str | None:
    try:
        parts = urlsplit(f"//{host_header}")
        return parts.hostname  # lower-cased, brackets and port gone
    except ValueError:  # a bad port or a bad bracket
        return None


def csrf_refusal(headers: Headers, scheme: str, token: str, form_token: str | None) -> str | None:
    """None if a POST with these headers is same-origin; else the reason to refuse it."""
    fetch_site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    if origin is not None:
        host = headers.get("host", "")
        if not _same_origin(origin, scheme, host):
            return "cross-origin request refused (Origin does not match Host)"
    if fetch_site is None and origin is None:
        given = headers.get(CSRF_HEADER) or form_token or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            return (
                "request refused: it has neither Origin nor Sec-Fetch-Site, so it must carry "
                "the dashboard's CSRF token (X-Backburner-CSRF header; see GET api/session)"
            )
    return None


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    if origin == "null" or not host:
        return False
    try:
        parts = urlsplit(origin)
        origin_host = parts.netloc.lower()
    except ValueError:
        return False
    if parts.path or parts.query or parts.fragment or origin_host != host.lower():
        return False
    # Behind a proxy that ends TLS the app sees http while the browser's origin is https:
    # the stronger scheme is accepted; the weaker one under https is not.
    return parts.scheme == scheme or (parts.scheme == "https" and scheme == "http")
