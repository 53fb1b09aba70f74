"""The FastAPI pattern of a long job: ``POST /reports`` answers 202, the client polls or listens.

``/status`` is ``status_app`` with a secret (the 202's ``Location`` is a signed URL), and, for
the tests, ``/open`` lets every request in (``authorize`` says yes). A report's job takes
``steps`` steps, each held until the test releases it, reporting its progress after each:

    POST /reports?key=K&steps=N       202, Location: /status/<id>?expires=...&sig=...
    POST /control/step?key=K&n=I      release step I (1-based) of report K
    POST /control/fail?key=K          make report K fail at its next step

Each ASGI call into the status mounts that returns is recorded (``served``, with its path):
how a test sees that a stream ended on the server's side.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backburner import BackburnerMiddleware, background, current_job
from backburner.status import accepted, status_app

from ._events import record, setting, watch_backburner_log

watch_backburner_log()

SECRET = "e2e-status-secret-0123456789-abcdef"

_steps: dict[tuple[str, int], asyncio.Event] = {}
_failing: set[str] = set()


def _step(key: str, n: int) -> asyncio.Event:
    return _steps.setdefault((key, n), asyncio.Event())


async def build_report(key: str, steps: int) -> dict[str, object]:
    """Waits for each step's release, then reports it; fails at a step if told to."""
    for n in range(1, steps + 1):
        await _step(key, n).wait()
        if key in _failing:
            raise RuntimeError(f"report {key} failed at step {n}")
        current_job().set_progress(n, steps, f"step {n} of {steps}")
    return {"key": key, "steps": steps}


class Served:
    """Records each call into ``app`` once it returns: a response (or a stream) has ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            record("served", path=scope.get("path", ""))


heartbeat = setting("heartbeat", 15.0)
statuses = status_app(secret=SECRET, interval=0.05, heartbeat=heartbeat)

app = FastAPI()
app.add_middleware(BackburnerMiddleware, workers=2, shutdown_timeout=2.0)
app.mount("/status", Served(statuses))
app.mount("/open", Served(status_app(authorize=lambda request, info: True, interval=0.05)))


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@app.post("/reports", status_code=202)
async def create_report(key: str, steps: int = 3) -> Response:
    job = background.enqueue(build_report, key, steps)
    return accepted(job, f"/status/{job.id}?{statuses.sign(job.id)}")


@app.post("/control/step")
async def release(key: str, n: int) -> dict[str, str]:
    _step(key, n).set()
    return {"released": f"{key}:{n}"}


@app.post("/control/fail")
async def make_fail(key: str) -> dict[str, str]:
    _failing.add(key)
    for (name, _), event in _steps.items():
        if name == key:  # the step it waits for, whichever
            event.set()
    return {"failing": key}
