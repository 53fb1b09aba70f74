"""pytest fixtures for code that uses backburner; pytest loads them by itself.

The package registers this module under pytest's ``pytest11`` entry point, so installing
backburner is enough (``-p no:backburner`` turns it off)::

    import pytest
    from backburner import Backburner

    @pytest.mark.anyio
    async def test_report_is_built(backburner_executor: Backburner) -> None:
        job = backburner_executor.enqueue(build_report, 42)
        assert await job == "report 42"

``backburner_executor`` is an async fixture, run by anyio's pytest plugin (anyio comes with
backburner): mark the tests that use it ``@pytest.mark.anyio`` (or run pytest-asyncio in auto
mode). Settings come from a ``backburner`` mark, ``@pytest.mark.backburner(workers=2)``; asking
for ``backburner_clock`` as well makes the executor run on that ``ManualClock``, so delays,
retries, timeouts and periodic ticks happen when the test calls ``advance``.

At the end of the test the executor waits for its jobs (``join``), then closes; a job that
failed is in ``failures()`` and logged, as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._executor import Backburner
from .testing import ManualClock

__all__ = ["backburner_clock", "backburner_executor"]

MARK = "backburner"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the mark, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARK}(**settings): settings for the backburner_executor fixture "
        "(any keyword Backburner() takes)",
    )


@pytest.fixture
def backburner_clock() -> ManualClock:
    """A ``testing.ManualClock``: the ``backburner_executor`` of the same test runs on it."""
    return ManualClock()


@pytest.fixture
async def backburner_executor(request: pytest.FixtureRequest) -> AsyncIterator[Backburner]:
    """A started ``Backburner`` on the test's event loop, drained and closed after the test.

    Its settings are the keywords of the test's ``@pytest.mark.backburner(...)`` (the
    closest mark wins); with the ``backburner_clock`` fixture it runs on that clock.
    """
    settings: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers(MARK))):
        if mark.args:
            raise TypeError(
                f"@pytest.mark.{MARK} takes Backburner's settings as keywords, "
                f"e.g. @pytest.mark.{MARK}(workers=2); got positional {mark.args!r}"
            )
        settings.update(mark.kwargs)
    if "backburner_clock" in request.fixturenames and "clock" not in settings:
        settings["clock"] = request.getfixturevalue("backburner_clock")
    async with Backburner(**settings) as executor:
        yield executor
        await executor.join()
