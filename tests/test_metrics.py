"""The job-duration histogram with or without OpenTelemetry, the limits' and yielding's gauges,
and label values escaped, in the dashboard's text, ``metrics_app`` and the collector."""

from __future__ import annotations

import json

import httpx
import pytest

from backburner import (
    Backburner,
    ConcurrencyLimit,
    JobStatus,
    QueueConfig,
    YieldToRequests,
    job,
)
from backburner._current import current_job
from backburner.dashboard._metrics import render_metrics
from backburner.prometheus import BackburnerCollector, metrics_app
from backburner.testing import ManualClock

from .jobs import Gate
from .processes import run_without_opentelemetry

pytestmark = pytest.mark.anyio

parser = pytest.importorskip("prometheus_client.parser")

# Seconds the jobs below say they ran, and the bucket each lands in (its upper bound).
RUNS = {0.3: "0.5", 3.0: "5.0", 20.0: "30.0", 1000.0: "+Inf"}
# What each job adds to the sum beyond its seconds: the few microseconds it really ran, on a
# busy machine perhaps more; far below the gaps between the buckets' bounds above.
SLACK = 1.0


def ran_for(seconds: float) -> None:
    """Make the current attempt look as if it began ``seconds`` ago (its ``started_at``)."""
    job = current_job()
    assert job is not None
    assert job.started_at is not None
    job.started_at -= seconds


async def async_ran_for(seconds: float) -> None:
    ran_for(seconds)


async def fails_after(seconds: float) -> None:
    ran_for(seconds)
    raise ValueError("no")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, by name and labels (parsed as a scraper would)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def histogram(text: str, queue: str) -> tuple[dict[str, float], float, float]:
    """A queue's cumulative buckets by bound, sum and count, from a Prometheus text."""
    found = samples(text)
    name = "backburner_job_duration_seconds"
    buckets = {
        dict(labels)["le"]: value
        for (sample, labels), value in found.items()
        if sample == f"{name}_bucket" and dict(labels)["queue"] == queue
    }
    key = (("queue", queue),)
    return buckets, found[(f"{name}_sum", key)], found[(f"{name}_count", key)]


def check_runs(buckets: dict[str, float], total: float, count: float) -> None:
    """The histogram of one job of each of ``RUNS``: each in its bucket (cumulative)."""
    assert count == len(RUNS) == buckets["+Inf"]
    assert sum(RUNS) <= total < sum(RUNS) + SLACK * len(RUNS)
    for seconds, bound in RUNS.items():
        assert buckets[bound] == sum(1 for other in RUNS if other <= seconds), bound
    assert (buckets["0.25"], buckets["2.5"], buckets["600.0"]) == (0, 1, 3)


async def run_each(bg: Backburner, queue: str = "default") -> None:
    """One job of each of ``RUNS``: async ones, a sync one in a thread, one that fails."""
    options = bg.options(queue=queue)
    await options.enqueue(async_ran_for, 0.3)
    await options.enqueue(ran_for, 3.0)  # sync: in a thread, on the queue's guarded path
    with pytest.raises(ValueError, match="no"):
        await options.enqueue(fails_after, 20.0)
    await options.options(timeout=3600).enqueue(async_ran_for, 1000.0)  # guarded too


async def test_every_attempt_is_counted_in_its_bucket_with_tracing_off() -> None:
    async with Backburner(tracing=False, queues={"mail": QueueConfig()}) as bg:
        await run_each(bg, "mail")
        text = render_metrics(bg)
    check_runs(*histogram(text, "mail"))
    buckets, total, count = histogram(text, "default")  # every local queue, even an idle one
    assert (buckets["+Inf"], total, count) == (0, 0.0, 0)


async def test_a_retried_attempt_and_a_cancelled_one_are_counted_too() -> None:
    clock = ManualClock()
    gate = Gate()
    tries: list[int] = []

    @job(retries=1, backoff=5.0, jitter=0.0)
    async def flaky() -> None:
        tries.append(1)
        ran_for(0.3)
        if len(tries) == 1:
            raise ValueError("once")

    async with Backburner(tracing=False, clock=clock) as bg:
        retried = bg.enqueue(flaky)
        await bg.join()  # the first attempt failed: the job waits for its retry
        assert retried.status is JobStatus.RETRYING
        clock.advance(5.0)
        await retried
        held = bg.enqueue(gate.hold)
        await gate.started.wait()
        held.cancel()
        await bg.join()
        buckets, _, count = histogram(render_metrics(bg), "default")
    assert count == 3  # two attempts of the flaky job, and the cancelled one
    assert buckets["0.5"] - buckets["0.25"] == 2


async def test_an_attempt_that_ended_before_it_began_counts_in_the_first_bucket() -> None:
    async with Backburner(tracing=False) as bg:
        await bg.enqueue(async_ran_for, -10.0)  # the wall clock was stepped back 10 s
        buckets, total, count = histogram(render_metrics(bg), "default")
    assert (buckets["0.001"], count) == (1, 1)
    assert total == 0.0  # the sum (-10 s) shown as no less than zero


def test_the_histogram_is_served_by_every_exporter_without_opentelemetry() -> None:
    # opentelemetry blocked, tracing on (the default): no telemetry, the histogram all the same.
    done = run_without_opentelemetry(
        """
        import asyncio, json
        import httpx, prometheus_client
        import backburner
        from backburner.dashboard._metrics import render_metrics
        from backburner.prometheus import BackburnerCollector, metrics_app
        from tests import test_metrics

        async def main():
            async with backburner.Backburner() as bg:
                assert bg.telemetry is None
                await test_metrics.run_each(bg)
                registry = prometheus_client.CollectorRegistry()
                registry.register(BackburnerCollector(bg))
                transport = httpx.ASGITransport(app=metrics_app(bg))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    served = (await client.get("/metrics")).text
                return {
                    "dashboard": render_metrics(bg),
                    "metrics_app": served,
                    "collector": prometheus_client.generate_latest(registry).decode(),
                }

        texts = asyncio.run(main())
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
        print(json.dumps(texts))
        """
    )
    assert done.returncode == 0, done.stderr
    texts: dict[str, str] = json.loads(done.stdout)
    assert set(texts) == {"dashboard", "metrics_app", "collector"}
    for text in texts.values():
        check_runs(*histogram(text, "default"))


async def test_the_collector_and_metrics_app_serve_the_histogram_with_tracing_off() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    async with Backburner(tracing=False) as bg:
        await run_each(bg)
        registry = prometheus_client.CollectorRegistry()
        registry.register(BackburnerCollector(bg))
        transport = httpx.ASGITransport(app=metrics_app(bg))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            served = (await client.get("/metrics")).text
        collected = prometheus_client.generate_latest(registry).decode()
    for text in (served, collected):
        check_runs(*histogram(text, "default"))


# The limits' and yielding's figures, read at scrape time.

ODD = 'a "quoted" back\\slash\nnewline name'


async def test_each_limit_shows_its_running_and_held_jobs_with_its_name_escaped() -> None:
    limit = ConcurrencyLimit(1, name=ODD)
    gate = Gate()
    async with Backburner(tracing=False, workers=4) as bg:
        first = bg.options(limits=[limit]).enqueue(gate.hold)
        await gate.started.wait()
        held = [bg.options(limits=[limit]).enqueue(gate.hold) for _ in range(2)]
        text = render_metrics(bg)
        gate.opened.set()
        await first
        for one in held:
            await one
    found = samples(text)
    labels = (("kind", "concurrency"), ("limit", ODD))
    assert found[("backburner_limit_jobs_running", labels)] == 1
    assert found[("backburner_limit_jobs_held", labels)] == 2
    # Escaped as the text format wants it: one line per sample, the name read back whole.
    assert 'limit="a \\"quoted\\" back\\\\slash\\nnewline name"' in text
    assert "# TYPE backburner_limit_jobs_held gauge" in text


async def test_a_queue_name_with_quotes_backslashes_and_newlines_is_escaped() -> None:
    async with Backburner(tracing=False, queues={ODD: QueueConfig()}) as bg:
        await bg.options(queue=ODD).enqueue(async_ran_for, 0.3)
        text = render_metrics(bg)
    buckets, _, count = histogram(text, ODD)
    assert (buckets["0.5"], count) == (1, 1)
    assert samples(text)[("backburner_jobs_processed_total", (("queue", ODD),))] == 1


async def test_yielding_shows_each_queues_effective_workers_and_the_pressure() -> None:
    clock = ManualClock()
    config = YieldToRequests(target_lag=0.01)
    bg = Backburner(
        tracing=False,
        queues={"mail": QueueConfig(workers=4)},
        workers=2,
        clock=clock,
        yield_to_requests=config,
    )
    async with bg:
        bg.yielding.request_arrived()
        bg.yielding.lag(0.05)  # five times the target
        clock.advance(0.1)  # the controller's step
        text = render_metrics(bg)
    found = samples(text)
    assert found[("backburner_workers_effective", (("queue", "default"),))] == 1
    assert found[("backburner_workers_effective", (("queue", "mail"),))] == 2
    assert found[("backburner_yield_pressure_ratio", ())] == pytest.approx(5.0)


async def test_without_limits_or_yielding_their_families_say_nothing() -> None:
    async with Backburner(tracing=False) as bg:
        text = render_metrics(bg)
    assert "backburner_workers_effective" not in text
    assert "backburner_yield_pressure_ratio" not in text
    assert not [key for key in samples(text) if key[0].startswith("backburner_limit_")]


def test_the_names_follow_prometheus_conventions() -> None:
    bg = Backburner(yield_to_requests=True)  # not started: its configured families
    types = {
        line.split()[2]: line.split()[3]
        for line in render_metrics(bg).splitlines()
        if line.startswith("# TYPE")
    }
    for name, kind in types.items():
        assert name.startswith("backburner_")
        assert name.endswith("_total") == (kind == "counter"), name
    assert types["backburner_job_duration_seconds"] == "histogram"
    assert types["backburner_yield_pressure_ratio"] == "gauge"
