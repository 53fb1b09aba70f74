"""Fixtures for the e2e tests: uvicorn processes that are always killed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._uvicorn import Serve, running


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(app, settings={...}, args=[...])`` starts ``tests.e2e.apps.<app>:app``."""
    with running(tmp_path) as start:
        yield start
