"""A Starlette app given ``BackburnerMiddleware(workers=0)``: uvicorn must exit with 3."""

from __future__ import annotations

from starlette.applications import Starlette

from backburner import BackburnerMiddleware

app = Starlette()
app.add_middleware(BackburnerMiddleware, workers=0)
