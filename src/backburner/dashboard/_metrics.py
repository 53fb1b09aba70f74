"""The executor's counters in Prometheus' text format (version 0.0.4), per queue; with
tracing on (``tracing=``, OpenTelemetry installed and configured), the attempts' durations
as a histogram too.

Counters start again at each executor start (as Prometheus expects of a process restart);
``rate()`` handles the reset.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._executor import Backburner
from .._otel import BOUNDS
from ._inspect import wait_totals
from ._present import printable

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (metric, type, QueueStats field, help)
_QUEUE_METRICS = (
    ("jobs_processed_total", "counter", "processed", "Job attempts that ran to an end."),
    ("jobs_failed_total", "counter", "failed", "Job attempts that raised."),
    ("jobs_dead_total", "counter", "dead", "Jobs that failed on every attempt allowed."),
    ("jobs_cancelled_total", "counter", "cancelled", "Jobs cancelled before or while running."),
    ("workers", "gauge", "workers", "Worker slots of the queue."),
    ("workers_busy", "gauge", "busy", "Worker slots running a job now."),
    ("jobs_pending", "gauge", "pending", "Jobs waiting for a worker."),
    ("jobs_scheduled", "gauge", "scheduled", "Jobs waiting for their time or for a retry."),
    ("queue_paused", "gauge", "paused", "1 while the queue is paused, else 0."),
)


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    value = printable(value)  # backslashes it adds are escaped below, as any other
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> str:
    lines = [f"# HELP backburner_{name} {help_text}", f"# TYPE backburner_{name} {kind}"]
    lines += [
        f"backburner_{name}{{{labels}}} {_number(value)}"
        if labels
        else f"backburner_{name} {_number(value)}"
        for labels, value in samples
    ]
    return "\n".join(lines)


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_metrics(executor: Backburner) -> str:
    """Every queue's counters and gauges, the dead list's size and the periodic jobs' runs."""
    stats = executor.stats()
    queues = list(stats.queues.values())
    families = [
        _family(name, kind, help_text, ((_queue(q.name), int(getattr(q, field))) for q in queues))
        for name, kind, field, help_text in _QUEUE_METRICS
    ]
    totals = wait_totals(executor)
    families.append(
        _family(
            "jobs_started_total",
            "counter",
            "Jobs (attempts) that a worker started.",
            ((_queue(name), started) for name, (started, _) in totals.items()),
        )
    )
    families.append(
        _family(
            "job_wait_seconds_total",
            "counter",
            "Seconds the started jobs waited for a worker, in all (divide by jobs_started_total).",
            ((_queue(name), max(0.0, waited)) for name, (_, waited) in totals.items()),
        )
    )
    families.append(
        _family(
            "failures_kept",
            "gauge",
            "Failed and dead jobs kept for inspection (the dashboard's dead list).",
            [("", len(executor.failures()))],
        )
    )
    periodic = stats.periodic
    families.append(
        _family(
            "periodic_runs_total",
            "counter",
            "Runs of each periodic job (ticks and triggers).",
            ((f'name="{escape_label(p.name)}"', p.runs) for p in periodic),
        )
    )
    families.append(
        _family(
            "periodic_skipped_total",
            "counter",
            "Ticks of each periodic job skipped (previous run still going, or queue full).",
            ((f'name="{escape_label(p.name)}"', p.skipped) for p in periodic),
        )
    )
    if executor.telemetry is not None:  # recorded by the traced jobs' hooks (tracing=)
        families.append(_durations(executor.telemetry.durations.snapshot()))
    return "\n".join(families) + "\n"


def _durations(queues: dict[str, tuple[list[int], float, int]]) -> str:
    name = "backburner_job_duration_seconds"
    lines = [
        f"# HELP {name} How long each job attempt ran, from taking a worker to its end.",
        f"# TYPE {name} histogram",
    ]
    bounds = [*(_number(bound) for bound in BOUNDS), "+Inf"]
    for queue, (cumulative, total, count) in queues.items():
        label = _queue(queue)
        lines += [
            f'{name}_bucket{{{label},le="{bound}"}} {value}'
            for bound, value in zip(bounds, cumulative, strict=True)
        ]
        lines += [f"{name}_sum{{{label}}} {_number(total)}", f"{name}_count{{{label}}} {count}"]
    return "\n".join(lines)


def _queue(name: str) -> str:
    return f'queue="{escape_label(name)}"'
