"""The public face of the package: what it exports, and how it presents itself."""

from __future__ import annotations

import importlib.resources

import backburner
from backburner import (
    BackburnerError,
    BrokerUnavailable,
    DuplicateJob,
    JobCancelled,
    JobTimeout,
    NotRunning,
    QueueFull,
    ShuttingDown,
)

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
    "BackgroundProxy",
    "BrokerUnavailable",
    "Enqueuer",
    "ExecutorStats",
    "Job",
    "JobCancelled",
    "JobStatus",
    "NotRunning",
    "QueueConfig",
    "QueueFull",
    "QueueStats",
    "ShutdownReport",
    "ShuttingDown",
    "background",
    "queue_full_handler",
}


def test_the_package_exports_exactly_the_documented_names() -> None:
    assert set(backburner.__all__) == EXPORTS
    public = {name for name in vars(backburner) if not name.startswith("_")}
    # The public submodules show up as attributes once something imports them.
    assert public - {"testing", "dashboard", "taskiq"} == EXPORTS


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
