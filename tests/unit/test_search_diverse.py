"""``diverse`` through the engine's options: where plain nearest neighbours are one class, MMR spreads the page.

The index primitive is tested in tests/unit/index/test_search_primitives.py; these tests go through
:class:`visearch.search.SearchEngine` (options → request → engine), so an option that no longer
asks the engine for diversity fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.helpers import TINY, TINY_CLASSES
from tests.unit.homes import search_engine
from tests.unit.index.modes import index_settings
from visearch.categories import load_registry
from visearch.index import open_index, point_id
from visearch.search import SearchEngine, SearchOptions, SearchResult
from visearch.settings import Settings
from visearch.storage import LocalStore

DIM = 8
PER_CLASS = 6
K = 4


def clustered() -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Tight, well separated clusters, one per class, the first one around the query point (``Trouser-0``).

    Every other Trouser is nearer the query than any other class, so the plain top ``K`` is all
    Trousers; a Trouser is also nearer the other Trousers than any other class is, so MMR (relevance
    minus similarity to the hits chosen) takes the next class after the first Trouser.
    """
    rng = np.random.default_rng(3)
    query = np.eye(DIM)[0]
    rows, files, classes = [], [], []
    for c, cls in enumerate(TINY_CLASSES[:4]):
        # Class 0 leans a little off the query (similarity ~0.95), the others further (~0.89) in their own directions.
        centre = query + (0.3 if c == 0 else 0.5) * np.eye(DIM)[1 + c]
        for i in range(PER_CLASS):
            rows.append(query if (c, i) == (0, 0) else centre + rng.normal(scale=0.01, size=DIM))
            files.append(f"{cls}-{i}.png")
            classes.append(cls)
    vectors = np.asarray(rows, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [point_id(TINY, file) for file in files]
    payloads = [
        {"file": file, "class": cls, "label": n // PER_CLASS}
        for n, (file, cls) in enumerate(zip(files, classes, strict=True))
    ]
    return ids, vectors, payloads


@pytest.fixture(params=["embedded", "memory"])
def engine(request: pytest.FixtureRequest, home: Settings) -> Iterator[SearchEngine]:
    """A SearchEngine on a live `tiny` collection of the clustered vectors, on each engine."""
    settings = index_settings(request.param, home.home)
    settings = settings.model_copy(update={"visearch_categories": home.visearch_categories})
    index = open_index(settings)
    ids, vectors, payloads = clustered()
    version = index.create(TINY, "m1", "d1", DIM)
    index.upsert(version.name, ids, vectors, payloads)
    index.seal(version.name)
    index.swap_alias(TINY, version.name)
    engine = SearchEngine(
        settings, load_registry(settings.visearch_categories), LocalStore(settings.objects_dir), index
    )
    yield engine
    engine.close()


def classes(results: list[SearchResult]) -> set[str]:
    return {result.cls for result in results}


def test_diverse_spreads_a_page_that_plain_search_fills_with_one_class(engine: SearchEngine) -> None:
    query = point_id(TINY, "Trouser-0.png")
    plain = engine.similar(TINY, query, k=K).results
    assert classes(plain) == {"Trouser"}  # the case: the nearest neighbours are all one class
    diverse = engine.similar(TINY, query, k=K, diverse=True).results
    assert len(diverse) == K and diverse[0].id == plain[0].id  # the most relevant hit still leads
    assert [r.id for r in diverse] != [r.id for r in plain]
    assert len(classes(diverse)) >= 3, [r.file for r in diverse]
    # A SearchOptions object asks for the same as the keyword: one options path.
    options = SearchOptions(k=K, diverse=True)
    assert [r.id for r in engine.similar(TINY, query, **vars(options)).results] == [r.id for r in diverse]


@pytest.fixture(scope="module")
def indexed_engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def test_diverse_spreads_one_class_pages_of_a_real_model(indexed_engine: SearchEngine) -> None:
    """The trained `tiny` model: every image query whose plain top K is one class gets more classes with diverse."""
    engine = indexed_engine
    one_class = 0
    for example in engine.examples(TINY, limit=engine.settings.max_k):
        image = engine.decode(engine.store.get_bytes(example.image_key))
        plain = engine.search(TINY, image, k=K).results
        if len(classes(plain)) > 1:
            continue
        one_class += 1
        diverse = engine.search(TINY, image, k=K, diverse=True).results
        assert diverse[0].id == plain[0].id and len(classes(diverse)) > 1, (example.file, [r.file for r in diverse])
    assert one_class > 0, "no query of the indexed home has a one-class page: the case above is not exercised"
