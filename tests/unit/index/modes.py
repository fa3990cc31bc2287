"""The index modes a test runs on: embedded, qdrant-client ``:memory:``, or a Qdrant server (``QDRANT_URL``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visearch.settings import Settings


def index_settings(mode: str, home: Path) -> Settings:
    """Settings of a home whose index is embedded, qdrant-client ``:memory:``, or the server at ``QDRANT_URL`` (else skip)."""
    engine: dict[str, object] = {"qdrant_url": None, "qdrant_host": None, "qdrant_api_key": None}
    if mode == "memory":
        engine["qdrant_url"] = ":memory:"
    elif mode == "remote":
        if not os.environ.get("QDRANT_URL"):
            pytest.skip("remote mode needs a Qdrant server: set QDRANT_URL (and QDRANT_API_KEY) to run it")
        engine = {"qdrant_url": os.environ["QDRANT_URL"], "qdrant_api_key": os.environ.get("QDRANT_API_KEY")}
    return Settings(visearch_home=home, **engine, _env_file=None)  # type: ignore[arg-type]
