"""Shared fixtures: the async backend, and a guard against errors asyncio only logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import pytest

PHASES: tuple[Literal["setup", "call", "teardown"], ...] = ("setup", "call", "teardown")


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Every async test runs on asyncio's own loop and on uvloop: uvicorn picks either."""
    return request.param  # type: ignore[no-any-return]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every uvloop test pytest-timeout's thread method.

    The signal method raises from a SIGALRM handler, and uvloop runs Python signal handlers
    inside a loop callback: the timeout becomes "Exception in callback", logged, and the hung
    test goes on hanging (seen: a CI run that never ended). The thread method dumps every
    thread's stack and ends the run, which at least fails fast and says where it hung.
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("anyio_backend") if callspec is not None else None
        if isinstance(backend, tuple) and backend[1].get("use_uvloop"):
            item.add_marker(pytest.mark.timeout(method="thread"))


@pytest.fixture(autouse=True)
def asyncio_logs_no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test in which asyncio logged an error.

    "Task exception was never retrieved", "Task was destroyed but it is pending" and exceptions
    in callbacks reach only asyncio's logger, never the test: each one is a backburner bug.
    """
    yield
    # caplog keeps each phase's records apart; this runs in the teardown phase.
    records = [record for when in PHASES for record in caplog.get_records(when)]
    messages = [
        record.getMessage()
        for record in records
        if record.levelno >= logging.ERROR and record.name.split(".")[0] == "asyncio"
    ]
    assert not messages, f"asyncio logged errors: {messages}"
