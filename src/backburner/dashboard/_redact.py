"""What the dashboard treats as secret: names (of arguments, keys, fields, query parameters),
and secrets written inside text: URL passwords, secret query parameters, ``Authorization``
credentials.

Names match as today's ``redact=`` documents: ignoring case, ``-`` and ``_``, as any part of
a name (``db_password``, ``X-Api-Key``); a name of four characters or fewer (``pin``, ``pwd``,
``pass``, ``auth``) matches only whole words of a name (``user_pin``, ``dbPass``, ``AUTH``,
``pins``), or ``shipping``, ``compass`` and ``author`` would be masked too.

Text is scanned once per pattern, in time linear in its length (every pattern is written so
that it cannot backtrack far): error messages and tracebacks come from application code.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from collections.abc import Iterable
from urllib.parse import unquote_plus

__all__ = ["DEFAULT_REDACT", "MASK", "QUERY_SECRETS", "SecretNames", "scrub_text"]

#: Argument names whose values are masked unless ``redact=`` says otherwise.
DEFAULT_REDACT = (
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pin",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "authorization",
    "auth",
    "cookie",
    "sessionid",
    "credential",
    "private_key",
)
#: Names masked as query parameters (``?signature=``, Azure's ``?sig=``) besides ``redact=``'s:
#: secret there, though an argument called ``signature`` usually is not.
QUERY_SECRETS = ("signature", "sig")
MASK = "••••••"
MIN_SECRET = 4  # a masked value this long or longer is masked wherever else it shows

_WORD_NAME = 4  # names this short match whole words only
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")  # snake, kebab, camel, CAPS
# scheme://user: (the user may hold "@": Azure's "user@server" names do, unencoded). What
# follows, up to the LAST "@" before the next space, is the password: "/", "@", ":" and "?"
# included. urllib.parse.urlsplit cannot be asked: it ends the host at the first "/", so it
# reads postgres://app:p@ss/w0rd@db as password "p", host "ss", path "/w0rd@db".
_URL_USER = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#:]*:")
_NOT_SPACE = re.compile(r"\S*")
# name=value after a start, a space, "?", "&", ";" or ",": URL queries, form bodies, cookies,
# libpq DSNs. A secret value runs to the next "&", "#" or space (";" and "," included).
_PARAM = re.compile(r"(?<![^\s?&;,])([\w.\-\[\]%+]+)=([^&#\s]*)")
# Authorization: <scheme> <credentials>, also as a dict's repr ('authorization': 'Bearer x').
_AUTH_HEADER = re.compile(
    r"(?<![\w-])((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z][\w-]*[ \t]+)?)"
    r"([^\s\"',;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?<![\w-])(bearer\s+)([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_BASIC = re.compile(r"(?<![\w-])(basic\s+)([A-Za-z0-9+/]+={0,2})(?![A-Za-z0-9+/=])", re.IGNORECASE)


def normal(name: str) -> str:
    """``name`` as names are compared: case, ``-`` and ``_`` ignored."""
    return name.lower().replace("-", "").replace("_", "")


class SecretNames:
    """A set of secret names, matched as the module docstring says."""

    __slots__ = ("parts", "words")

    def __init__(self, names: Iterable[str]) -> None:
        normals = [normal(name) for name in names]
        self.parts = tuple(n for n in normals if len(n) > _WORD_NAME)
        self.words = frozenset(n for n in normals if len(n) <= _WORD_NAME)

    def match(self, name: str) -> bool:
        """True if ``name`` names a secret."""
        lowered = normal(name)
        if any(part in lowered for part in self.parts):
            return True
        if not self.words:
            return False
        words = [word.lower() for word in _WORDS.findall(name)]
        for i in range(len(words)):  # a word, or consecutive words (a_b matches "ab")
            joined = ""
            for word in words[i:]:
                joined += word
                if joined in self.words or (joined[-1] == "s" and joined[:-1] in self.words):
                    return True  # (a plural too: pins, pwds)
                if len(joined) > _WORD_NAME:
                    break
        return False


def scrub_text(text: str, params: SecretNames, found: list[str]) -> str:
    """``text`` with the secrets it spells out masked: URL passwords, the values of secret
    query parameters (``?token=...``, also ``name=value`` after a space), ``Authorization``
    credentials and ``Bearer``/``Basic`` ones. Each value masked is added to ``found``."""
    if "@" in text and "://" in text:
        text = _url_passwords(text, found)
    if "=" in text:
        text = _params(text, params, found)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(lambda m: _hide(m, found), text)
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: _hide(m, found), text)
    if "basic" in lowered:
        text = _BASIC.sub(lambda m: _hide(m, found) if _is_basic(m[2]) else m[0], text)
    return text


def _url_passwords(text: str, found: list[str]) -> str:
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    search_from = 0
    while (user := _URL_USER.search(text, search_from)) is not None:
        start = user.end()
        run = _NOT_SPACE.match(text, start)
        end = run.end() if run is not None else start
        at = text.rfind("@", start, end)
        if at < 0:  # no password here, nor in any URL later in this run
            search_from = max(end, start)
            continue
        _found(text[start:at], found)
        parts += (text[done:start], MASK)
        done = search_from = at
    return "".join(parts) + text[done:] if parts else text


def _params(text: str, params: SecretNames, found: list[str]) -> str:
    parts: list[str] = []
    done = search_from = 0
    while (param := _PARAM.search(text, search_from)) is not None:
        value = param[2]
        if not value or not params.match(unquote_plus(param[1])):
            search_from = param.start(2)  # a=1;token=x: look inside a's value too
            continue
        _found(value, found)
        _found(unquote_plus(value), found)
        parts += (text[done : param.start(2)], MASK)
        done = search_from = param.end()
    return "".join(parts) + text[done:] if parts else text


def _hide(match: re.Match[str], found: list[str]) -> str:
    _found(match[2], found)
    return match[1] + MASK


def _is_basic(credentials: str) -> bool:
    # Basic credentials are base64("user:password"): a prose "Basic setup" is not.
    try:
        return b":" in b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return False


def _found(value: str, found: list[str]) -> None:
    if len(value) >= MIN_SECRET and value != MASK and value not in found:
        found.append(value)
