"""``python -m demo_app``: serve the demo with uvicorn.

Every option also reads an environment variable, for a default that is not 8000::

    python -m demo_app --port 8001          # or DEMO_PORT=8001 (make demo DEMO_PORT=8001)
    python -m demo_app --smtp-port 1025     # the mail catcher's port (default: a free one)
    python -m demo_app --mail-delay 0.5     # seconds the pretend mail service takes
    python -m demo_app --digest-every 10    # the periodic sign-up digest's period (or off)
    python -m demo_app --reminder-delay 5   # seconds from a sign-up to its reminder (or off)
    python -m demo_app --retry-backoff 0.5  # seconds before a failed welcome email's retry

The dashboard at ``/backburner/`` asks for user ``demo`` and a password printed at start:
a new random one each time, unless ``DEMO_DASHBOARD_PASSWORD`` sets one.

When the port asked for is busy (another demo still running, say), the demo serves on a free
port instead and prints which, rather than ending in uvicorn's ``[Errno 98]``.
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from .app import DASHBOARD_USER, create_app

#: The demo's logging, as ``uvicorn --log-config demo_app/logging.json`` would take it: every
#: line with its time, level and logger, and the job a record came from (``JobContextFilter``).
LOGGING_CONFIG = Path(__file__).with_name("logging.json")


def _port(text: str) -> int:
    if not (text.isascii() and text.isdecimal() and 0 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:  # also refuses nan
        raise argparse.ArgumentTypeError(f"give a number of seconds from 0 to 60, got {text!r}")
    return seconds


def _seconds_or_off(text: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"give a number of seconds from 0 to 86400, or off, got {text!r}"
        )
    return seconds


def _period(text: str) -> float | None:
    seconds = _seconds_or_off(text)
    if seconds == 0:
        raise argparse.ArgumentTypeError("a period is more than 0 seconds (or off)")
    return seconds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with defaults from ``DEMO_HOST``, ``DEMO_PORT`` and friends."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m demo_app", description="Serve the backburner demo app."
    )
    parser.add_argument(
        "--host", default=env("DEMO_HOST", "127.0.0.1"), help="address to serve on (DEMO_HOST)"
    )
    parser.add_argument(
        "--port", type=_port, default=env("DEMO_PORT", "8000"), help="HTTP port (DEMO_PORT)"
    )
    parser.add_argument(
        "--smtp-port",
        type=_port,
        default=env("DEMO_SMTP_PORT", "0"),
        help="port of the mail catcher on 127.0.0.1; 0 picks a free one (DEMO_SMTP_PORT)",
    )
    parser.add_argument(
        "--mail-delay",
        type=_seconds,
        default=env("DEMO_MAIL_DELAY", "0.2"),
        help="seconds the pretend mail service takes per email (DEMO_MAIL_DELAY)",
    )
    parser.add_argument(
        "--digest-every",
        type=_period,
        default=env("DEMO_DIGEST_EVERY", "60"),
        help="seconds between sign-up digests, or off (DEMO_DIGEST_EVERY)",
    )
    parser.add_argument(
        "--reminder-delay",
        type=_seconds_or_off,
        default=env("DEMO_REMINDER_DELAY", "30"),
        help="seconds from a sign-up to its reminder email, or off (DEMO_REMINDER_DELAY)",
    )
    parser.add_argument(
        "--retry-backoff",
        type=_seconds,
        default=env("DEMO_RETRY_BACKOFF", "2"),
        help="seconds before a failed welcome email is retried, doubling (DEMO_RETRY_BACKOFF)",
    )
    return parser.parse_args(argv)


def usable_port(host: str, port: int) -> int:
    """``port`` if a server can listen on it at ``host``, else a free port of ``host``.

    Checked by binding a socket and closing it before uvicorn binds its own: between the two
    another program could take the port, which a demo on a developer's machine can live with
    (uvicorn would then say so). Other failures (no such address, a port below 1024 without
    the right) end the program with a one-line message instead of a traceback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in (port, 0):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As uvicorn binds: Linux then refuses only a port that another socket listens on,
            # not one whose old connections wait out TIME_WAIT after a restart.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, candidate))
            except OSError as error:
                if error.errno == errno.EADDRINUSE and candidate != 0:
                    continue
                raise SystemExit(
                    f"python -m demo_app: cannot serve on {host} port {candidate}: {error.strerror}"
                ) from None
            bound: int = sock.getsockname()[1]
            return bound if candidate == 0 else port
    raise AssertionError("unreachable: binding to port 0 either succeeds or exits")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until interrupted, logging as ``logging.json`` says."""
    args = parse_args(argv)
    host = f"[{args.host}]" if ":" in args.host else args.host
    port = usable_port(args.host, args.port)  # for --port 0, the free port it picked
    if args.port not in (0, port):
        print(
            f"backburner demo: port {args.port} is busy (another program listens on it), "
            f"so the demo uses port {port} instead.\n"
            f"To choose the port: DEMO_PORT={port} make demo, or python -m demo_app --port {port}",
            flush=True,
        )
    password = os.environ.get("DEMO_DASHBOARD_PASSWORD") or secrets.token_urlsafe(12)
    print(
        f"backburner demo: serving on http://{host}:{port}/ "
        f"(caught mail at /inbox, counters at /stats)\n"
        f"dashboard: http://{host}:{port}/backburner/ "
        f"user {DASHBOARD_USER!r}, password {password!r} (new at each start)",
        flush=True,
    )
    app = create_app(
        smtp_port=args.smtp_port,
        mail_delay=args.mail_delay,
        dashboard_password=password,
        digest_every=args.digest_every,
        reminder_delay=args.reminder_delay,
        retry_backoff=args.retry_backoff,
    )
    uvicorn.run(app, host=args.host, port=port, lifespan="on", log_config=str(LOGGING_CONFIG))


if __name__ == "__main__":
    main()
