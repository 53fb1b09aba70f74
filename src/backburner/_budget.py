"""The shutdown budget check: does the server's shutdown plus ours fit in the platform's grace?

After SIGTERM a platform waits a fixed time, then sends SIGKILL (Heroku: 30 s; Kubernetes:
``terminationGracePeriodSeconds``, 30 s by default). uvicorn first waits up to its
``--timeout-graceful-shutdown`` for open requests, and only then runs the lifespan shutdown,
where the executor spends up to ``shutdown_timeout``. If the two add up to more than the grace,
a SIGKILL can land mid-drain: jobs then vanish with no report. So the executor says so once, at
startup, with the numbers and what to change.

Where the numbers come from:

* ``platform_grace="auto"``: 30 s when ``DYNO`` is set (Heroku), else no check. Elsewhere pass
  the platform's grace in seconds; ``None`` turns the check off.
* ``server_shutdown_timeout="auto"``: read from the uvicorn server running this process, if any
  (its ``Server.handle_exit`` is the SIGTERM handler while it serves, and holds its config);
  else 0. Other servers: pass their graceful timeout in seconds.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "check_budget_setting",
    "check_server_timeout",
    "running_uvicorn",
    "shutdown_budget_warning",
    "warn_if_over_budget",
]

logger = logging.getLogger("backburner")

HEROKU_GRACE = 30.0
_MISSING = object()

Auto = Literal["auto"]


def check_budget_setting(name: str, value: object, *, none_allowed: bool) -> float | Auto | None:
    """``"auto"``, a finite number of seconds of at least 0, or (if allowed) None."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    if value is None and none_allowed:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        allowed = '"auto", None or a number of seconds' if none_allowed else '"auto" or seconds'
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, got {value!r}")
    return float(value)


def check_server_timeout(value: object) -> float | Auto:
    """``server_shutdown_timeout``: ``"auto"`` or a finite number of seconds of at least 0."""
    checked = check_budget_setting("server_shutdown_timeout", value, none_allowed=False)
    if checked is None:  # pragma: no cover - refused above
        raise TypeError("server_shutdown_timeout cannot be None")
    return checked


def platform_grace_of(
    setting: float | Auto | None, environ: Mapping[str, str] = os.environ
) -> tuple[float, str] | None:
    """The platform's grace in seconds and where it came from; None: nothing to check."""
    if setting is None:
        return None
    if setting == "auto":
        if "DYNO" in environ:
            return HEROKU_GRACE, "Heroku's (DYNO is set)"
        return None
    return setting, "the platform's (platform_grace)"


def server_timeout_of(setting: float | Auto) -> tuple[float, str]:
    """The server's graceful-shutdown timeout in seconds (0: none found) and where it came from."""
    if setting != "auto":
        return setting, "the server's graceful shutdown (server_shutdown_timeout)"
    server = running_uvicorn()
    config = getattr(server, "config", None)
    value = getattr(config, "timeout_graceful_shutdown", _MISSING)
    if server is not None and value is not _MISSING:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), "uvicorn's --timeout-graceful-shutdown"
        return 0.0, "uvicorn's --timeout-graceful-shutdown (not set: open requests may add more)"
    return 0.0, "the server's graceful shutdown (unknown: server_shutdown_timeout)"


def running_uvicorn() -> object | None:
    """The uvicorn ``Server`` serving this process, if any: its ``handle_exit`` is the SIGTERM
    handler while it serves (in the main thread), and sets its ``should_exit``."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return server if type(server).__module__.startswith("uvicorn") else None


def shutdown_budget_warning(
    shutdown_timeout: float,
    server_setting: float | Auto,
    grace_setting: float | Auto | None,
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """The warning to give if the server's shutdown plus ours outlasts the platform's grace."""
    grace = platform_grace_of(grace_setting, environ)
    if grace is None:
        return None
    grace_seconds, grace_source = grace
    server_seconds, server_source = server_timeout_of(server_setting)
    total = server_seconds + shutdown_timeout
    if total <= grace_seconds:
        return None
    fixes = []
    if grace_seconds - server_seconds > 0:
        fixes.append(f"lower shutdown_timeout to {grace_seconds - server_seconds:g}s or less")
    if server_seconds > 0 and grace_seconds - shutdown_timeout > 0:
        fixes.append(f"lower the server's to {grace_seconds - shutdown_timeout:g}s or less")
    fixes.append("pass platform_grace=<seconds> if the platform waits longer")
    return (
        f"shutdown may outlast the platform's grace: {server_source} {server_seconds:g}s + "
        f"shutdown_timeout {shutdown_timeout:g}s = {total:g}s, over {grace_source} "
        f"{grace_seconds:g}s before SIGKILL, which would lose running jobs unreported; "
        + "; or ".join(fixes)
    )


def warn_if_over_budget(
    shutdown_timeout: float, server_setting: float | Auto, grace_setting: float | Auto | None
) -> None:
    """Log ``shutdown_budget_warning`` at WARNING, if there is one."""
    message = shutdown_budget_warning(shutdown_timeout, server_setting, grace_setting)
    if message is not None:
        logger.warning(message)
