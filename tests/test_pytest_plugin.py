"""The pytest fixtures users get with the package (backburner.pytest_plugin), run by pytest.

Each test writes a user's test file and runs pytest on it in-process (``pytester``). The plugin
is named with ``-p`` rather than found through the entry point, so that these tests do not
depend on how this checkout was installed; test_packaging checks the entry point itself.
"""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

#: The plugin under its module's name, whether or not the entry point loaded it already.
PLUGIN = ("-p", "no:backburner", "-p", "backburner.pytest_plugin", "-p", "no:randomly")


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = --strict-markers\n")
    return pytester.runpytest(*PLUGIN)


def test_the_executor_fixture_runs_jobs_on_the_tests_loop(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import asyncio
import pytest
from backburner import Backburner, background

async def double(x):
    return (asyncio.get_running_loop(), 2 * x)

@pytest.mark.anyio
async def test_it(backburner_executor: Backburner) -> None:
    loop, value = await backburner_executor.enqueue(double, 21)
    assert value == 42
    assert loop is asyncio.get_running_loop()
    assert backburner_executor.running
    assert (await background.enqueue(double, 1))[1] == 2  # the only one running

@pytest.fixture
def anyio_backend():
    return "asyncio"
""",
    )
    result.assert_outcomes(passed=1)


def test_the_mark_gives_the_executor_its_settings(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
from backburner import Backburner, QueueConfig

pytestmark = [pytest.mark.anyio, pytest.mark.backburner(workers=3)]

async def test_module_mark(backburner_executor: Backburner) -> None:
    assert backburner_executor.stats().total.workers == 3

@pytest.mark.backburner(workers=2, queues={"mail": QueueConfig(workers=1)})
async def test_closest_mark_wins(backburner_executor: Backburner) -> None:
    stats = backburner_executor.stats()
    assert stats.queues["default"].workers == 2
    assert stats.queues["mail"].workers == 1

@pytest.fixture
def anyio_backend():
    return "asyncio"
""",
    )
    result.assert_outcomes(passed=2)


def test_a_bad_setting_in_the_mark_fails_the_test_saying_which(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest

@pytest.mark.anyio
@pytest.mark.backburner(wokers=2)
async def test_typo(backburner_executor) -> None:
    pass

@pytest.mark.anyio
@pytest.mark.backburner(2)
async def test_positional(backburner_executor) -> None:
    pass

@pytest.fixture
def anyio_backend():
    return "asyncio"
""",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*wokers*workers*", "*takes Backburner's settings as keywords*"])


def test_with_the_clock_fixture_time_moves_when_the_test_says(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
from backburner import Backburner, JobStatus
from backburner.testing import ManualClock

def ping():
    return "pong"

@pytest.mark.anyio
async def test_delay(backburner_executor: Backburner, backburner_clock: ManualClock) -> None:
    job = backburner_executor.enqueue_in(3600, ping)
    assert job.status is JobStatus.SCHEDULED
    backburner_clock.advance(3600)
    assert await job == "pong"

@pytest.fixture
def anyio_backend():
    return "asyncio"
""",
    )
    result.assert_outcomes(passed=1)


def test_jobs_still_running_at_the_end_of_the_test_are_waited_for(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
import anyio
import pytest

ended = []

async def slow():
    await anyio.sleep(0.01)
    ended.append(True)

@pytest.mark.anyio
async def test_leaves_a_job(backburner_executor) -> None:
    backburner_executor.enqueue(slow)

def test_it_ended() -> None:
    assert ended == [True]

@pytest.fixture
def anyio_backend():
    return "asyncio"
""",
    )
    result.assert_outcomes(passed=2)


def test_the_mark_is_declared_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = run(pytester, "import pytest\n\ndef test_nothing():\n    pass\n")
    result.assert_outcomes(passed=1)
    assert "backburner(**settings)" in "\n".join(pytester.runpytest(*PLUGIN, "--markers").outlines)
