"""Fixtures of the service tier."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    """An HTTP client of the module's running service (the ``server`` fixture)."""
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client
