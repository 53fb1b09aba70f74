"""Startup in a real uvicorn process: failures exit with code 3, no lifespan means no jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._runs import named
from ._uvicorn import Serve, Uvicorn, running

pytestmark = pytest.mark.e2e

STARTUP_FAILURE = 3  # uvicorn's exit code when the lifespan startup failed


@pytest.fixture(scope="module")
def failed_startup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    """``apps/failing_startup.py``: its startup enqueues a job, then raises; uvicorn exited."""
    with running(tmp_path_factory.mktemp("failed-startup")) as start:
        server = start("failing_startup")
        server.wait_exit(within=15)
        yield server


def test_an_app_whose_startup_raises_exits_3_with_its_message(failed_startup: Uvicorn) -> None:
    assert failed_startup.exit_code == STARTUP_FAILURE
    stderr = failed_startup.output()
    assert "e2e: the database at db.invalid is unreachable" in stderr
    assert "Application startup failed" in stderr


def test_a_job_enqueued_by_a_failed_startup_never_runs_and_is_reported(
    failed_startup: Uvicorn,
) -> None:
    events = failed_startup.events()
    enqueued = [event["id"] for event in events if event["event"] == "enqueued"]
    reports = [event["unfinished"] for event in events if event["event"] == "report"]
    assert len(enqueued) == 1
    assert reports == [
        [
            {
                "id": enqueued[0],
                "name": "never_runs",
                "queue": "default",
                "status": "cancelled",
                "kind": "not_started",
            }
        ]
    ]
    assert not [event for event in events if event["event"] == "started"]


def test_a_bad_middleware_setting_exits_3_naming_the_setting(serve: Serve) -> None:
    server = serve("bad_settings")
    code, _ = server.wait_exit(within=15)
    assert code == STARTUP_FAILURE
    assert "BackburnerMiddleware: workers must be at least 1" in server.output()


def test_without_lifespan_an_endpoint_that_enqueues_gets_a_clear_error(serve: Serve) -> None:
    server = serve("endpoints", args=["--lifespan", "off"])
    server.wait_ready()
    with server.client() as client:
        answers = [client.post(path, params={"key": path}) for path in ("/async", "/sync")]
    for answer in answers:
        assert answer.status_code == 503
        assert "has not started" in answer.text
        assert "--lifespan off" in answer.text
    assert not [event for event in server.events() if event["event"] == "enqueued"]


def budget_warnings(server: Uvicorn) -> list[str]:
    logs = named(server.events(), "log")
    return [event["message"] for event in logs if "platform's grace" in event["message"]]


def test_on_heroku_a_shutdown_budget_over_30s_is_warned_about_at_startup(serve: Serve) -> None:
    server = serve(
        "load",
        settings={"shutdown_timeout": 8},
        args=["--timeout-graceful-shutdown", "25"],
        env={"DYNO": "web.1"},
    )
    server.wait_ready()
    [message] = budget_warnings(server)
    assert "uvicorn's --timeout-graceful-shutdown 25s + shutdown_timeout 8s = 33s" in message
    assert "over Heroku's (DYNO is set) 30s before SIGKILL" in message
    assert "lower shutdown_timeout to 5s or less" in message
    assert "WARNING" in server.output()


def test_within_the_platforms_grace_there_is_no_warning(serve: Serve) -> None:
    server = serve(
        "load",
        settings={"shutdown_timeout": 8},
        args=["--timeout-graceful-shutdown", "20"],
        env={"DYNO": "web.1"},
    )
    server.wait_ready()
    assert budget_warnings(server) == []
