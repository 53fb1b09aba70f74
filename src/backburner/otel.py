"""OpenTelemetry: spans and metrics for every job, with ``pip install 'backburner[otel]'``.

Nothing to call: configure a tracer provider (and a meter provider) as an app already does,
and each executor traces its jobs through them. A PRODUCER span ``publish <queue>`` at each
enqueue, a child of whatever span is current (a request's); a CONSUMER span
``process <queue>`` per attempt, with the messaging semantic conventions
(``messaging.system`` = ``backburner``, ``messaging.destination.name``,
``messaging.message.id`` = the job's id, ``messaging.operation``) and ``backburner.attempt``;
its error or timeout recorded. The first attempt of a job enqueued inside a trace, to run
now, continues that trace; retries, delayed jobs, periodic ticks and jobs recovered from a
journal start their own, linked to the enqueue span. Metrics: ``backburner.job.duration``
(a histogram) and the counters the dashboard's ``/metrics`` has.

``Backburner(tracing=False)`` turns all of it off; ``tracing=Telemetry(tracer_provider=...,
meter_provider=...)`` uses providers other than the global ones.
"""

from ._otel import Telemetry as Telemetry

__all__ = ["Telemetry"]

Telemetry.__module__ = __name__
