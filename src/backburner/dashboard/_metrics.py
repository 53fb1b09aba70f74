"""The executor's counters in Prometheus' text format (version 0.0.4), per queue, the
attempts' durations as a histogram, and the limits' and yielding's figures.

Everything is read at scrape time: the counters and the duration buckets the queues keep
as jobs end, the limits and yielding from ``stats()``. Counters start again at each
executor start (as Prometheus expects of a process restart); ``rate()`` handles the reset.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._durations import BOUNDS, cumulative
from .._executor import Backburner
from .._stats import LimitStats, YieldStats
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
    families.append(_durations(executor))
    families += _limits(stats.limits)
    if stats.yielding is not None:
        families += _yielding(stats.yielding)
    return "\n".join(families) + "\n"


def _durations(executor: Backburner) -> str:
    # Each local queue's buckets, kept as its jobs end (a remote queue's jobs run elsewhere).
    name = "backburner_job_duration_seconds"
    lines = [
        f"# HELP {name} How long each job attempt ran, from taking a worker to its end.",
        f"# TYPE {name} histogram",
    ]
    bounds = [*(_number(bound) for bound in BOUNDS), "+Inf"]
    for queue, queue_object in list(executor.queues().items()):
        durations = queue_object.durations()
        if durations is None:
            continue
        counts, total = durations
        cumulated, label = cumulative(counts), _queue(queue)
        lines += [
            f'{name}_bucket{{{label},le="{bound}"}} {value}'
            for bound, value in zip(bounds, cumulated, strict=True)
        ]
        # (Wall-clock times: a clock stepped back could make the sum dip below zero.)
        lines += [
            f"{name}_sum{{{label}}} {_number(max(0.0, total))}",
            f"{name}_count{{{label}}} {cumulated[-1]}",
        ]
    return "\n".join(lines)


def _limits(limits: tuple[LimitStats, ...]) -> list[str]:
    labels = [(f'limit="{escape_label(s.name)}",kind="{escape_label(s.kind)}"', s) for s in limits]
    return [
        _family(
            "limit_jobs_running",
            "gauge",
            "Jobs a ConcurrencyLimit counts now (holding a slot), or a RateLimit's starts in "
            "its current window; over every key.",
            ((label, s.running) for label, s in labels),
        ),
        _family(
            "limit_jobs_held",
            "gauge",
            "Jobs a limit holds now (blocked or throttled); they hold no worker.",
            ((label, s.held) for label, s in labels),
        ),
    ]


def _yielding(yielding: YieldStats) -> list[str]:
    return [
        _family(
            "workers_effective",
            "gauge",
            "Worker slots of the queue that may run jobs now (yielding to requests lowers it).",
            ((_queue(name), count) for name, count in yielding.effective_workers.items()),
        ),
        _family(
            "yield_pressure_ratio",
            "gauge",
            "Yielding's last signal as a multiple of its target: past 1, fewer jobs start.",
            [("", float(yielding.pressure))],
        ),
    ]


def _queue(name: str) -> str:
    return f'queue="{escape_label(name)}"'
