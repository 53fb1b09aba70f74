"""The public face of the package: what it exports, and how it presents itself."""

from __future__ import annotations

import importlib.resources
import inspect
import types
from pathlib import Path
from typing import Any

import pytest

import backburner
from backburner import (
    Backburner,
    BackburnerError,
    BackgroundProxy,
    BrokerUnavailable,
    DuplicateJob,
    JobCancelled,
    JobTimeout,
    NotRunning,
    Periodic,
    QueueConfig,
    QueueFull,
    ShuttingDown,
    background,
    job,
)
from backburner.testing import ManualClock

EXPORTS = {
    "Backburner",
    "Clock",
    "DuplicateJob",
    "JobOptions",
    "JobTimeout",
    "JournalConfig",
    "JournalError",
    "JournalStats",
    "Periodic",
    "PeriodicStats",
    "job",
    "BackburnerError",
    "BackburnerMiddleware",
    "BackburnerSettings",
    "BackgroundProxy",
    "BrokerUnavailable",
    "Engine",
    "Enqueuer",
    "ExecutorStats",
    "Job",
    "JobCancelled",
    "JobHooks",
    "JobStatus",
    "NotRunning",
    "QueueConfig",
    "QueueFull",
    "QueueStats",
    "ShutdownReport",
    "ShuttingDown",
    "YieldStats",
    "YieldToRequests",
    "background",
    "queue_full_handler",
    "current_job",
    "CurrentJob",
    "JobInfo",
    "NotInJob",
    "Progress",
    "ConcurrencyLimit",
    "RateLimit",
    "Snooze",
    "LimitStats",
}


def test_the_package_exports_exactly_the_documented_names() -> None:
    assert set(backburner.__all__) == EXPORTS
    public = {
        name
        for name, value in vars(backburner).items()
        # The public submodules show up as attributes once something imports them.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPORTS


def test_the_operations_modules_export_their_names_each_with_a_docstring() -> None:
    import backburner.health
    import backburner.logs
    import backburner.prometheus

    expected = {
        backburner.logs: {
            "FIELDS", "JobContextFilter", "add_job_context", "current_job", "install_fallback"
        },
        backburner.health: {"HealthApp", "health_app"},
        backburner.prometheus: {"BackburnerCollector", "metrics_app"},
    }  # fmt: skip
    for module, names in expected.items():
        assert set(module.__all__) == names, module.__name__
        for name in names - {"FIELDS"}:
            assert (getattr(module, name).__doc__ or "").strip(), f"{module.__name__}.{name}"


def test_exported_classes_say_they_belong_to_backburner() -> None:
    for name in backburner.__all__:
        obj = getattr(backburner, name)
        if isinstance(obj, type):
            assert obj.__module__ == "backburner", name
    assert repr(backburner.JobStatus.PENDING).startswith("<JobStatus")


def test_every_runtime_error_is_a_backburner_error() -> None:
    for error in (
        QueueFull,
        NotRunning,
        ShuttingDown,
        JobCancelled,
        JobTimeout,
        DuplicateJob,
        BrokerUnavailable,
    ):
        assert issubclass(error, BackburnerError)
    assert issubclass(ShuttingDown, NotRunning)


def test_every_public_name_has_a_docstring() -> None:
    for name in backburner.__all__:
        obj = getattr(backburner, name)
        doc = (type(obj) if name == "background" else obj).__doc__
        assert doc, name
        assert doc.strip(), name


def test_the_package_ships_its_type_information() -> None:
    assert importlib.resources.files("backburner").joinpath("py.typed").is_file()


def test_the_dashboard_package_exports_its_names_and_ships_its_files() -> None:
    import backburner.dashboard as dashboard_package

    assert set(dashboard_package.__all__) == {"BasicAuth", "Dashboard", "dashboard"}
    assert dashboard_package.Dashboard.__module__ == "backburner.dashboard"
    files = importlib.resources.files("backburner.dashboard")
    for name in ("static/dashboard.js", "static/dashboard.css", "templates/base.html"):
        assert files.joinpath(name).is_file(), name


# `background` has the executor's public surface, so that the docs' "the same methods" holds.

#: The executor's lifecycle belongs to whoever opened it (the middleware), not to `background`.
LIFECYCLE = {"open", "start", "aclose"}
ENQUEUE_FAMILY = {"enqueue", "aenqueue", "enqueue_in", "enqueue_at", "options"}


def executor_public_names() -> set[str]:
    """Every public method and property of Backburner, and every public attribute it sets."""
    names = {name for name in dir(Backburner) if not name.startswith("_")}
    return names | {name for name in vars(Backburner()) if not name.startswith("_")}


def test_background_has_every_public_method_and_attribute_of_the_executor() -> None:
    names = executor_public_names()
    assert {"find_job", "failures", "retry", "pause", "trigger", "clock"} <= names  # sanity
    missing = names - LIFECYCLE - set(dir(BackgroundProxy))
    assert not missing, f"add these to BackgroundProxy (_proxy.py): {sorted(missing)}"
    assert not LIFECYCLE & set(dir(BackgroundProxy))


@job(name="public_api.noop")
async def noop() -> None:
    pass


@pytest.mark.anyio
async def test_each_name_on_background_is_the_current_executors_own(tmp_path: Path) -> None:
    # Settings that all differ, so that a name read from the wrong attribute shows.
    executor = Backburner(
        queues={"mail": QueueConfig()},
        shutdown_timeout=7.0,
        cancel_grace=0.5,
        on_error=lambda job, exc: None,
        max_scheduled=123,
        clock=ManualClock(),
        loop_lag_warning=2.5,
        platform_grace=40.0,
        server_shutdown_timeout=3.0,
        journal=tmp_path / "jobs.sqlite3",
    )
    async with executor as bg:
        assert background.executor is bg
        for name in sorted(executor_public_names() - LIFECYCLE):
            ours, theirs = getattr(background, name), getattr(bg, name)
            if name in ENQUEUE_FAMILY:  # background's own (its fast path), the same calls
                assert inspect.signature(ours) == inspect.signature(theirs), name
            elif inspect.ismethod(theirs):
                assert ours == theirs, name  # bg's own method, bound to bg
            else:
                assert ours is theirs, name


def fails() -> None:
    raise ValueError("boom")


@pytest.mark.anyio
async def test_background_steers_the_current_executor_as_the_readme_says() -> None:
    tick = Periodic(noop, every=3600, name="hourly")
    async with Backburner(queues={"mail": QueueConfig()}, periodic=[tick]) as bg:
        failed = background.enqueue(fails)
        await background.join()
        assert background.failures() == [failed]
        assert background.find_job(failed.id) is failed
        background.pause("mail")
        assert background.paused() == frozenset({"mail"})
        background.resume("mail")
        assert background.paused() == frozenset()
        assert background.retry(failed) is failed
        await background.join()
        assert background.discard_all() == 1
        ticked = background.trigger("hourly")
        assert ticked is not None
        await ticked
        assert background.stats() == bg.stats()
        assert background.running


def test_backgrounds_attributes_are_read_only() -> None:
    with pytest.raises(AttributeError, match=r"background.executor.clock = \.\.\."):
        background.clock = ManualClock()  # type: ignore[assignment]


def test_background_says_what_it_forwards() -> None:
    find_job: Any = BackgroundProxy.find_job
    assert find_job.__doc__ == Backburner.find_job.__doc__
    assert "Backburner.find_job" in repr(find_job)


def test_background_in_a_job_means_the_executor_running_that_job() -> None:
    # Inside a request of one app, a job of another executor: background, there, is that
    # other executor, for enqueue as for everything else.
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from backburner import BackburnerMiddleware

    from .jobs import noop

    other = Backburner()
    seen: dict[str, object] = {}

    async def in_other() -> None:
        seen["executor"] = background.executor
        seen["also"] = background.find_job(background.enqueue(noop).id)

    async def endpoint(request: Request) -> PlainTextResponse:
        async with other:
            await other.enqueue(in_other)
            await other.join()
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(BackburnerMiddleware)])
    with TestClient(app) as client:
        assert client.get("/").text == "ok"
    assert seen["executor"] is other
    assert seen["also"] is not None  # the job went to `other`, where find_job finds it


def test_the_status_package_exports_its_names() -> None:
    import backburner.status as status_package

    assert set(status_package.__all__) == {"Authorize", "StatusApp", "accepted", "status_app"}
    assert status_package.StatusApp.__module__ == "backburner.status"
    assert status_package.status_app.__doc__
    assert status_package.accepted.__doc__
