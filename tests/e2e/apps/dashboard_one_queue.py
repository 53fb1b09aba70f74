"""The dashboard of an app with the default single queue, as most apps start.

``dashboard_app`` has three queues; the chart's size and the screenshots in the docs are
about this, the common case. Same control routes as ``dashboard_app`` (``POST
/control/hold?key=K``, ``/control/release?key=K``, ``/control/quick``, ``/control/fail``...),
one mount, ``/bb`` (Basic auth ``admin`` / ``s3cret``), updated every second.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from backburner import BackburnerMiddleware, Periodic
from backburner.dashboard import dashboard

from .dashboard_app import PASSWORD, USER, control, health, nightly_report

app = Starlette(
    routes=[
        Route("/health", health),
        Route("/control/{what}", control, methods=["POST"]),
        Mount("/bb", dashboard(auth=(USER, PASSWORD), poll_interval=1)),
    ]
)
app.add_middleware(
    BackburnerMiddleware,
    periodic=[Periodic(nightly_report, every=3600)],
    shutdown_timeout=2.0,
)
