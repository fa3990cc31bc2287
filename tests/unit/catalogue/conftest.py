"""A live tiny category on both engines (embedded qdrant-edge, qdrant-client local mode), built in process.

The vectors come from a small deterministic image embedding (8x8 grey pixels, L2-normalised): the
catalogue takes any ``embed`` callable, and this one makes a replaced image's vector checkable.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient

from tests.helpers import TINY, photo
from visearch.catalogue import Catalogue
from visearch.categories import Category, Registry
from visearch.index import CollectionVersion, VectorIndex, open_index, point_id
from visearch.index.qdrant import QdrantBackend
from visearch.settings import Settings
from visearch.stages.upsert import payload_for
from visearch.storage import LocalStore

DIM = 64


def pixels(data: bytes) -> np.ndarray:
    """The image's 8x8 grey pixels as a unit vector."""
    with Image.open(io.BytesIO(data)) as image:
        values = np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32).ravel() + 1.0
    return values / np.linalg.norm(values)


def embed(version: CollectionVersion, datas: Sequence[bytes]) -> np.ndarray:
    """The catalogue's ``embed``: one vector per image (the model version does not change this toy model)."""
    return np.stack([pixels(data) for data in datas]) if datas else np.zeros((0, DIM), np.float32)


def png(index: int) -> bytes:
    """A distinct real photo (scikit-image samples) as PNG bytes."""
    buffer = io.BytesIO()
    photo(index, size=32).save(buffer, format="PNG")
    return buffer.getvalue()


def edge_index(home: Settings) -> VectorIndex:
    """The embedded index of a home (a fresh backend: what another process would open)."""
    return open_index(Settings(visearch_home=home.home, qdrant_url=None, qdrant_host=None, _env_file=None))


def build_version(catalogue: Catalogue, model_version: str, upto: int | None = None) -> CollectionVersion:
    """What the pipeline does: the category's rows at a log position → a new sealed collection (no swap)."""
    rows = catalogue.rows(upto=upto)
    category, store, index = catalogue.category, catalogue.store, catalogue.index
    vectors = embed(None, [store.get_bytes(key) for key in rows["key"]])  # type: ignore[arg-type]
    version = index.create(category.name, model_version, f"d{len(rows)}", DIM, category.fields)
    captions = [c for c in rows.columns if c not in ("file", "class", "label", "key", "digest")]
    payloads = [payload_for(row, captions, store) for _, row in rows.iterrows()]
    ids = [point_id(category.name, str(file)) for file in rows["file"]]
    index.upsert(version.name, ids, vectors, payloads, captions=category.captions)
    index.seal(version.name)
    return version


@pytest.fixture(params=["edge", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tiny(registry: Registry) -> Category:
    return registry.get(TINY)


@pytest.fixture
def live(home: Settings, tiny: Category, engine: str, tmp_path: Path) -> Iterator[Catalogue]:
    """A catalogue whose category has a live version built from its base rows."""
    if engine == "edge":
        index = edge_index(home)
    else:  # qdrant-client local mode: the server code path (QdrantBackend), in process
        index = VectorIndex(QdrantBackend(QdrantClient(path=str(tmp_path / "qdrant"))))
    catalogue = Catalogue(LocalStore(home.objects_dir), index, tiny, embed, home.home / "locks", wait=5.0)
    version = build_version(catalogue, "m1")
    index.swap_alias(tiny.name, version.name)
    yield catalogue
    index.close()
