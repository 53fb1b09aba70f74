"""The shutdown budget check: one startup warning when the server's shutdown plus ours
outlasts the platform's grace before SIGKILL, with the numbers and what to change."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from backburner import Backburner, BackburnerMiddleware
from backburner._budget import server_timeout_of, shutdown_budget_warning

HEROKU = {"DYNO": "web.1"}


@pytest.fixture
def uvicorn_serving() -> Iterator[Any]:
    """Install a uvicorn Server's SIGTERM handler, as ``Server.serve`` does; yield its config."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = uvicorn.Config(app, timeout_graceful_shutdown=20)
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        yield config
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_over_herokus_grace_the_warning_gives_the_numbers_and_the_fixes() -> None:
    message = shutdown_budget_warning(8.0, 25.0, "auto", HEROKU)
    assert message is not None
    assert "server_shutdown_timeout) 25s + shutdown_timeout 8s = 33s" in message
    assert "over Heroku's (DYNO is set) 30s before SIGKILL" in message
    assert "lower shutdown_timeout to 5s or less" in message
    assert "lower the server's to 22s or less" in message
    assert "platform_grace=<seconds>" in message


def test_within_the_grace_there_is_no_warning() -> None:
    assert shutdown_budget_warning(8.0, 22.0, "auto", HEROKU) is None
    assert shutdown_budget_warning(30.0, 0.0, "auto", HEROKU) is None


def test_auto_checks_only_where_the_platform_is_known() -> None:
    assert shutdown_budget_warning(60.0, 60.0, "auto", {}) is None


def test_an_explicit_grace_is_checked_anywhere_and_none_turns_the_check_off() -> None:
    message = shutdown_budget_warning(12.0, 0.0, 10.0, {})
    assert message is not None
    assert "shutdown_timeout 12s = 12s, over the platform's (platform_grace) 10s" in message
    assert "lower shutdown_timeout to 10s or less" in message
    assert "the server's to" not in message  # the server adds nothing to lower
    assert shutdown_budget_warning(60.0, 60.0, None, HEROKU) is None


def test_a_server_timeout_over_the_grace_alone_asks_only_for_the_server_to_change() -> None:
    message = shutdown_budget_warning(8.0, 40.0, 30.0, {})
    assert message is not None
    assert "lower shutdown_timeout" not in message
    assert "lower the server's to 22s or less" in message


def test_uvicorns_graceful_timeout_is_read_from_the_server_serving_this_process(
    uvicorn_serving: Any,
) -> None:
    assert server_timeout_of("auto") == (20.0, "uvicorn's --timeout-graceful-shutdown")
    uvicorn_serving.timeout_graceful_shutdown = None
    seconds, source = server_timeout_of("auto")
    assert seconds == 0.0
    assert "not set" in source
    assert server_timeout_of(5.0)[0] == 5.0  # an explicit setting wins


def test_without_uvicorn_the_server_adds_nothing_unless_told() -> None:
    seconds, source = server_timeout_of("auto")
    assert seconds == 0.0
    assert "unknown: server_shutdown_timeout" in source


@pytest.mark.anyio
async def test_the_executor_warns_once_at_startup(
    caplog: pytest.LogCaptureFixture, uvicorn_serving: Any
) -> None:
    caplog.set_level(logging.WARNING, "backburner")
    async with Backburner(shutdown_timeout=15, platform_grace=30):
        pass
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "uvicorn's --timeout-graceful-shutdown 20s + shutdown_timeout 15s = 35s" in (
        record.getMessage()
    )


@pytest.mark.anyio
async def test_the_check_reads_dyno_from_the_environment(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "backburner")
    monkeypatch.setenv("DYNO", "web.1")
    async with Backburner(shutdown_timeout=31):
        pass
    async with Backburner(shutdown_timeout=31, platform_grace=None):
        pass
    assert ["Heroku's" in record.getMessage() for record in caplog.records] == [True]


def test_the_middleware_passes_the_settings_on() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    executor = BackburnerMiddleware(app, platform_grace=60, server_shutdown_timeout=5).executor
    assert (executor.platform_grace, executor.server_shutdown_timeout) == (60.0, 5.0)
    assert BackburnerMiddleware(app).executor.platform_grace == "auto"


@pytest.mark.parametrize(
    ("settings_", "error", "message"),
    [
        ({"platform_grace": -1}, ValueError, r"platform_grace must be a finite number"),
        ({"platform_grace": float("inf")}, ValueError, r"platform_grace must be a finite"),
        ({"platform_grace": "heroku"}, TypeError, r'platform_grace must be "auto", None or'),
        ({"platform_grace": True}, TypeError, r"platform_grace must be .* got bool"),
        ({"server_shutdown_timeout": None}, TypeError, r'server_shutdown_timeout must be "auto"'),
        ({"server_shutdown_timeout": -2}, ValueError, r"server_shutdown_timeout must be a finite"),
    ],
)
def test_bad_budget_settings_are_refused_naming_the_setting(
    settings_: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Backburner(**settings_)
