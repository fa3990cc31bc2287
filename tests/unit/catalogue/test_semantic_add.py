"""An image added to the catalogue is found by the meaning of its captions at once, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.unit.catalogue.conftest import DIM, edge_index, embed, png
from visearch.catalogue import Catalogue
from visearch.categories import Category
from visearch.index import SearchRequest, VectorIndex, point_id
from visearch.index.qdrant import QdrantBackend
from visearch.index.semantic import query_vector as meaning_of
from visearch.index.text import query_vector as words_of
from visearch.index.versions import schema_hash
from visearch.settings import Settings
from visearch.stages.upsert import payload_for
from visearch.storage import LocalStore


@pytest.fixture
def semantic_live(home: Settings, tiny: Category, engine: str, tmp_path: Path) -> Iterator[Catalogue]:
    """A live version built as the pipeline builds it where the sentence model is installed."""
    if engine == "edge":
        index = edge_index(home)
    else:
        index = VectorIndex(QdrantBackend(QdrantClient(path=str(tmp_path / "qdrant"))))
    catalogue = Catalogue(LocalStore(home.objects_dir), index, tiny, embed, home.home / "locks", wait=5.0)
    rows = catalogue.rows()
    schema = schema_hash(tiny.fields, tiny.captions)
    version = index.create(tiny.name, "m1", "d", DIM, tiny.fields, schema, semantic=True)
    captions = [c for c in rows.columns if c not in ("file", "class", "label", "key", "digest")]
    payloads = [payload_for(row, captions, catalogue.store) for _, row in rows.iterrows()]
    ids = [point_id(tiny.name, str(file)) for file in rows["file"]]
    vectors = embed(version, [catalogue.store.get_bytes(key) for key in rows["key"]])
    index.upsert(version.name, ids, vectors, payloads, captions=tiny.captions, semantic=True)
    index.seal(version.name)
    index.swap_alias(tiny.name, version.name)
    yield catalogue
    index.close()


def test_an_added_image_is_found_by_the_meaning_of_its_caption(semantic_live: Catalogue) -> None:
    """No caption holds "jacket"; the added coat's does mean it, and the next query finds it."""
    index, name = semantic_live.index, semantic_live.category.name
    added = semantic_live.add(png(1), {"class": "Coat", "article": "Coat"})
    live = index.require_live(name).name
    words, meaning = words_of("jacket"), meaning_of("jacket")
    assert index.search(live, SearchRequest(5, text=words)) == []  # BM25 alone finds nothing
    hits = index.search(live, SearchRequest(5, text=words, semantic=meaning))
    assert hits and hits[0].id == added.id
