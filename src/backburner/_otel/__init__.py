"""OpenTelemetry for jobs: a span at enqueue, a span per attempt, metrics (``pip install
'backburner[otel]'``).

Nothing here imports ``opentelemetry`` until an executor is made with tracing on (the
default) and the package is installed: ``open_telemetry`` returns None otherwise, and the
executor then runs exactly as it does without this layer (its shortest enqueue and run paths,
no hooks). With it, ``Admission`` asks ``JobTelemetry.publishing`` for a PRODUCER span around
each enqueue, and every job holds ``TracedHooks``, which open a CONSUMER span per attempt and
record the attempt's duration. ``_spans.py`` holds the spans, ``_meters.py`` the instruments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._spans import JobTelemetry, Observed

__all__ = ["Telemetry", "check_tracing", "open_telemetry"]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Where an executor sends its spans and metrics: ``Backburner(tracing=Telemetry(...))``.

    ``tracing=True`` (the default) uses the global providers, those
    ``opentelemetry.trace.set_tracer_provider`` and ``opentelemetry.metrics.set_meter_provider``
    set; give providers here to use others (a test's in-memory ones, say). A provider left
    None is the global one.
    """

    tracer_provider: Any = None
    meter_provider: Any = None


def check_tracing(value: object) -> bool | Telemetry:
    """The ``tracing`` setting, checked: True, False or a ``Telemetry``."""
    if isinstance(value, (bool, Telemetry)):
        return value
    raise TypeError(
        f"tracing must be True (the global OpenTelemetry providers), False (no spans, no "
        f"metrics) or backburner.otel.Telemetry(tracer_provider=..., meter_provider=...), "
        f"got {type(value).__name__} {value!r}"
    )


def open_telemetry(setting: bool | Telemetry, observed: Observed) -> JobTelemetry | None:
    """The telemetry of an executor, or None: tracing is off, or opentelemetry-api is missing.

    ``observed`` is what the metrics read when a reader collects them (the executor).
    """
    if setting is False:
        return None
    try:
        from ._spans import JobTelemetry
    except ImportError:  # opentelemetry-api is not installed: nothing to trace with
        return None
    config = setting if isinstance(setting, Telemetry) else Telemetry()
    return JobTelemetry(config.tracer_provider, config.meter_provider, observed)
