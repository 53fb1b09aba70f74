"""OpenTelemetry for jobs: a span at enqueue, a span per attempt, metrics (``pip install
'backburner[otel]'``).

Nothing here imports ``opentelemetry`` until an executor opens with tracing on (the
default); ``Tracing.open`` gives it None if the package is not installed or no provider is
configured, and the executor then runs exactly as it does without this layer (its shortest
enqueue and run paths, no hooks). With it, ``Admission`` asks ``JobTelemetry.publishing``
for a PRODUCER span around each enqueue, and every job holds ``TracedHooks``, which open a
CONSUMER span per attempt and record its duration in the meter's histogram (the Prometheus
one is the queues' own: ``_durations.py``). ``_spans.py`` holds the spans, ``_meters.py``
the instruments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._meters import Observed
    from ._spans import JobTelemetry

__all__ = ["Telemetry", "Tracing", "check_tracing"]


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


class Tracing:
    """One executor's ``tracing`` setting, made into its telemetry each time it opens."""

    __slots__ = ("setting", "telemetry")

    def __init__(self, setting: bool | Telemetry) -> None:
        self.setting = setting
        #: Made at the first ``open`` that finds something to trace with; then kept.
        self.telemetry: JobTelemetry | None = None

    def open(self, observed: Observed) -> JobTelemetry | None:
        """The executor's telemetry, or None: nothing to trace with, so no cost per job.

        None when tracing is off, when opentelemetry-api is not installed, and with
        ``tracing=True`` while no tracer or meter provider has been configured (the API's
        default ones drop everything: traced jobs would pay for nothing). ``observed`` is
        what the metrics read when a reader collects them (the executor).
        """
        if self.setting is False:
            return None
        if self.telemetry is None:
            try:
                from ._spans import JobTelemetry, configured
            except ImportError:  # opentelemetry-api is not installed
                return None
            if isinstance(self.setting, Telemetry):
                config = self.setting
            elif configured():
                config = Telemetry()
            else:
                return None
            self.telemetry = JobTelemetry(config.tracer_provider, config.meter_provider, observed)
        return self.telemetry
