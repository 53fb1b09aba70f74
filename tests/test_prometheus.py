"""backburner's metrics in an app's own ``prometheus_client`` registry, and ``metrics_app``."""

from __future__ import annotations

import httpx
import pytest

from backburner import Backburner
from backburner.dashboard._metrics import render_metrics
from backburner.prometheus import BackburnerCollector, metrics_app

from .jobs import fail, noop

pytestmark = pytest.mark.anyio

prometheus_client = pytest.importorskip("prometheus_client")


async def test_the_collector_puts_backburner_metrics_in_the_app_registry() -> None:
    registry = prometheus_client.CollectorRegistry()
    app_counter = prometheus_client.Counter("app_requests", "The app's own.", registry=registry)
    app_counter.inc()
    async with Backburner() as bg:
        registry.register(BackburnerCollector(bg))
        await bg.enqueue(noop)
        await bg.enqueue(fail, "boom").wait()
        assert registry.get_sample_value("backburner_jobs_processed_total", {"queue": "default"})
        assert registry.get_sample_value("backburner_jobs_failed_total", {"queue": "default"}) == (
            1.0
        )
        assert registry.get_sample_value("backburner_failures_kept") == 1.0
        assert registry.get_sample_value("app_requests_total") == 1.0
        text = prometheus_client.generate_latest(registry).decode()
    assert "# TYPE backburner_jobs_processed_total counter" in text
    assert 'backburner_workers{queue="default"} 4.0' in text


async def test_every_family_of_the_dashboard_text_is_collected() -> None:
    async with Backburner() as bg:
        names = {
            line.split()[2] for line in render_metrics(bg).splitlines() if line.startswith("# TYPE")
        }
        collected = {
            family.name + ("_total" if family.type == "counter" else "")
            for family in BackburnerCollector(bg).collect()
        }
    assert collected == names


def test_registering_twice_is_refused_as_for_any_duplicate_metric() -> None:
    registry = prometheus_client.CollectorRegistry()
    bg = Backburner()  # not started: its configured queues are described
    registry.register(BackburnerCollector(bg))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(BackburnerCollector(bg))


def test_a_duplicate_is_refused_at_register_even_before_an_executor_runs() -> None:
    # Registered at import time (bg=None, nothing runs yet), twice by mistake or beside
    # another exporter of the same names: accepted, each scrape would hold every family twice,
    # which Prometheus refuses whole (the app's own metrics with it).
    registry = prometheus_client.CollectorRegistry()
    registry.register(BackburnerCollector())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(BackburnerCollector())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prometheus_client.Gauge("backburner_workers", "Not ours.", registry=registry)


def test_without_an_executor_running_the_collector_has_nothing_to_say() -> None:
    assert list(BackburnerCollector().collect()) == []


async def test_metrics_app_serves_the_dashboard_text() -> None:
    async with Backburner() as bg:
        await bg.enqueue(noop)
        transport = httpx.ASGITransport(app=metrics_app(bg))
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
            response = await client.get("/")
            refused = await client.post("/")
        assert response.text == render_metrics(bg)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert refused.status_code == 405


def test_a_bad_executor_is_refused() -> None:
    with pytest.raises(TypeError, match="takes a Backburner or None"):
        BackburnerCollector("bg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a Backburner or None"):
        metrics_app(42)  # type: ignore[arg-type]
