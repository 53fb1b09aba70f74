"""One real uvicorn process serving ``tests/e2e/apps/dashboard_app.py`` per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..e2e._uvicorn import Uvicorn, running

USER, PASSWORD = "admin", "s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    """The dashboard app, served on a free port of 127.0.0.1 for the whole module."""
    with running(tmp_path_factory.mktemp("dashboard")) as start:
        server = start("dashboard_app")
        server.wait_ready()
        yield server


@pytest.fixture
def client(server: Uvicorn) -> Iterator[httpx.Client]:
    """A client signed in with Basic auth (the mounts that use it share the credentials)."""
    with httpx.Client(base_url=server.base_url, auth=(USER, PASSWORD), timeout=10.0) as client:
        yield client


def control(server: Uvicorn, what: str, **params: Any) -> Any:
    """Call a control route of the test app; its JSON answer."""
    with server.client() as client:
        response = client.post(f"/control/{what}", params=params)
        response.raise_for_status()
        return response.json()
