"""Reading and checking the demo's two forms; every refusal is an ``HTTPException`` with a reason.

Starlette's ``request.form()`` needs the ``python-multipart`` package, which backburner does
not depend on; these forms are small and urlencoded, which the standard library parses.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .jobs import MAX_FIBONACCI
from .recent import MODES, Mode

__all__ = ["parse_address", "parse_broken", "parse_count", "parse_mode", "read_form"]

#: More than the forms ever need; a bigger body is refused, not read.
MAX_BODY = 4096

# Deliberately simple: ASCII, one @, no spaces or characters that mean something in a header.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")

Form = dict[str, str]


async def read_form(request: Request) -> Form:
    """The urlencoded form in the request body, the first value of each field."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(
            415, f"send the form as application/x-www-form-urlencoded, not {content_type}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"the form is too large (at most {MAX_BODY} bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not valid UTF-8") from None
    return {name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}


def parse_address(form: Form) -> str:
    """The ``email`` field, checked: a plain ASCII address of at most 254 characters."""
    address = form.get("email", "").strip()
    if not address:
        raise HTTPException(400, "please give an email address, like ada@example.com")
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise HTTPException(
            400, f"{address[:80]!r} is not an email address this demo accepts (ada@example.com)"
        )
    return address


def parse_count(form: Form) -> int:
    """The ``n`` field: how many Fibonacci numbers, a whole number from 1 to the maximum."""
    raw = form.get("n", "").strip()
    limits = f"a whole number from 1 to {MAX_FIBONACCI}"
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 6:
        raise HTTPException(400, f"N must be {limits}, got {raw[:20]!r}")
    count = int(raw)
    if not 1 <= count <= MAX_FIBONACCI:
        raise HTTPException(400, f"N must be {limits}, got {count}")
    return count


def parse_mode(request: Request, form: Form) -> Mode:
    """``inline`` or ``background`` (the default), from the form's ``mode`` or ``?mode=``."""
    raw = form.get("mode") or request.query_params.get("mode") or "background"
    for mode in MODES:
        if raw == mode:
            return mode
    raise HTTPException(400, f"mode must be 'background' or 'inline', got {raw[:20]!r}")


def parse_broken(form: Form) -> bool:
    """The sign-up's ``broken`` checkbox: send the welcome email to a broken address."""
    raw = form.get("broken", "")
    if raw not in ("", "on"):
        raise HTTPException(400, f"broken is a checkbox: 'on' or absent, got {raw[:20]!r}")
    return raw == "on"
