"""The whole loop on real images: the indexed home has one point per valid image and answers queries."""

from __future__ import annotations

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS
from visearch.categories import load_registry
from visearch.index import open_index
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.storage import LocalStore


def test_loop_indexes_every_image_and_answers(indexed_home: Settings) -> None:
    store = LocalStore(indexed_home.objects_dir)
    index = open_index(indexed_home)
    try:
        live = index.require_live(TINY)
        assert index.count(live.name) == len(TINY_CLASSES) * TINY_PER_CLASS
        engine = SearchEngine(indexed_home, load_registry(indexed_home.visearch_categories), store, index)
        query = engine.examples(TINY, limit=1)[0]
        data = store.get_bytes(query.image_key)
        results = engine.search(TINY, data, k=5).results
        assert len(results) == 5
        # The query image itself is indexed: it comes back first with similarity ~100 %.
        assert results[0].file == query.file
        assert results[0].similarity > 99.0
        assert results[0].score >= results[-1].score
    finally:
        index.close()
