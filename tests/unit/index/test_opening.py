"""``open_index``: the backend the settings choose, and the refusals before any engine is touched."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from visearch.errors import EngineNotConfiguredError
from visearch.index.edge import EdgeBackend
from visearch.index.facade import VectorIndex
from visearch.index.opening import open_index
from visearch.index.qdrant import QdrantBackend
from visearch.settings import Settings

NO_SERVER = {"qdrant_url": None, "qdrant_host": None, "qdrant_api_key": None}


def test_without_a_qdrant_url_the_index_is_embedded_under_the_home(tmp_path: Path) -> None:
    settings = Settings(visearch_home=tmp_path, **NO_SERVER, _env_file=None)  # type: ignore[arg-type]
    index = open_index(settings)
    try:
        assert isinstance(index, VectorIndex) and isinstance(index.backend, EdgeBackend)
        version = index.create("shoes", "m1", "d4t4", 4)
        assert (settings.index_path / "collections" / version.name).is_dir()
    finally:
        index.close()


def test_memory_location_uses_the_qdrant_client(tmp_path: Path) -> None:
    index = open_index(Settings(visearch_home=tmp_path, qdrant_url=":memory:", _env_file=None))
    try:
        assert isinstance(index.backend, QdrantBackend)
        assert not (tmp_path / "index").exists()
    finally:
        index.close()


def test_required_engines_refuse_the_embedded_fallback(tmp_path: Path) -> None:
    settings = Settings(visearch_home=tmp_path, visearch_require_engines=True, **NO_SERVER, _env_file=None)  # type: ignore[arg-type]
    with pytest.raises(EngineNotConfiguredError, match="QDRANT_URL"):
        open_index(settings)
    assert not (tmp_path / "index").exists()


def test_an_index_of_an_older_visearch_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "qdrant").mkdir()  # qdrant-client local-mode data of visearch before qdrant-edge
    settings = Settings(visearch_home=tmp_path, **NO_SERVER, _env_file=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="visearch.index.opening"):
        open_index(settings).close()
    assert "holds an index of an older visearch" in caplog.text and str(tmp_path / "qdrant") in caplog.text
