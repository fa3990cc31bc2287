"""The package face: every public name resolves from ``visearch.index``, and nothing more loads than asked for."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import visearch.index

HOMES = {
    "UPSERT_BATCH": "types",
    "Hit": "types",
    "Record": "types",
    "SearchRequest": "types",
    "Sparse": "types",
    "CollectionVersion": "versions",
    "point_id": "versions",
    "VectorIndex": "facade",
    "open_index": "opening",
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_public_name_is_its_modules_object(name: str) -> None:
    home = importlib.import_module(f"visearch.index.{HOMES[name]}")
    assert getattr(visearch.index, name) is getattr(home, name)
    assert name in dir(visearch.index)


def test_the_face_exports_exactly_these_names() -> None:
    assert sorted(visearch.index.__all__) == sorted(HOMES)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        visearch.index.nothing  # noqa: B018


def test_importing_one_backend_does_not_load_the_facade() -> None:
    """A process that opens only the embedded engine (e.g. a reader subprocess) loads neither façade nor settings."""
    code = (
        "import sys, visearch.index.edge; print(' '.join(sorted(m for m in sys.modules if m.startswith('visearch'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "visearch.index.edge" in loaded
    assert not {"visearch.index.facade", "visearch.index.opening", "visearch.settings"} & set(loaded), loaded
