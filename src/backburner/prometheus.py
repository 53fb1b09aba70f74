"""backburner's metrics for Prometheus, without the dashboard.

Two ways, the same metrics (those the dashboard's ``/metrics`` serves, built by the same
code):

* an app that already exposes a ``prometheus_client`` registry adds a collector to it (the
  ``prometheus`` extra: ``pip install backburner[prometheus]``)::

      from prometheus_client import REGISTRY
      REGISTRY.register(BackburnerCollector(bg))

* an app without one routes its scraper's path to ``metrics_app()`` (behind whatever
  guards the app's other internal endpoints)::

      Route("/metrics", metrics_app(bg))     # a Starlette route to an ASGI app

The collector reads the executor at each scrape: O(queues + periodic jobs), nothing per job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import NotRunning
from ._executor import Backburner
from ._proxy import current_executor
from .dashboard._metrics import CONTENT_TYPE, render_metrics

__all__ = ["BackburnerCollector", "metrics_app"]


def _executor(bg: Backburner | None) -> Backburner | None:
    if bg is not None:
        return bg
    try:
        return current_executor()
    except NotRunning:
        return None


def _check(bg: object, who: str) -> None:
    if bg is not None and not isinstance(bg, Backburner):
        raise TypeError(f"{who} takes a Backburner or None, got {bg!r}")


class BackburnerCollector:
    """A ``prometheus_client`` collector of ``bg``'s metrics (None: the executor running here).

    ``registry.register(BackburnerCollector(bg))``; each scrape reads the executor's counters.
    Needs ``prometheus_client`` (the ``prometheus`` extra).
    """

    def __init__(self, bg: Backburner | None = None) -> None:
        _check(bg, "BackburnerCollector(bg)")
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise ImportError(
                "BackburnerCollector needs prometheus_client: pip install 'backburner[prometheus]'"
                " (or mount backburner.prometheus.metrics_app(), which does not)"
            ) from None
        self._parse = text_string_to_metric_families
        self.bg = bg

    def collect(self) -> Iterator[Any]:
        """The metric families, read now (nothing while no executor runs and none was given)."""
        executor = _executor(self.bg)
        if executor is not None:
            yield from self._parse(render_metrics(executor))

    def describe(self) -> Iterator[Any]:
        """The metric families, for the registry's check of duplicate names at ``register``:
        those of an executor not started if none runs yet (registered at import time), so that
        a duplicate is refused there, not served twice in every scrape."""
        executor = _executor(self.bg)
        yield from self._parse(render_metrics(Backburner() if executor is None else executor))


class _MetricsApp:
    def __init__(self, bg: Backburner | None) -> None:
        self.bg = bg

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("Method Not Allowed", 405, {"Allow": "GET, HEAD"})
        else:
            executor = _executor(self.bg)
            text = "" if executor is None else render_metrics(executor)
            response = Response(text.encode(), media_type=CONTENT_TYPE)
        await response(scope, receive, send)


def metrics_app(bg: Backburner | None = None) -> ASGIApp:
    """An ASGI app answering any ``GET`` with ``bg``'s metrics in Prometheus' text format.

    ``bg`` None: the executor of the request, else the only one running in the process (an
    empty page while there is none). The same text as the dashboard's ``/metrics``.
    """
    _check(bg, "metrics_app(bg)")
    return _MetricsApp(bg)
