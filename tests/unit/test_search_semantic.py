"""Semantic caption search through SearchEngine: a word in no caption finds images by meaning where
the index holds caption meaning; without the sentence model's package, text search is BM25 alone."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.helpers import TINY, TINY_PER_CLASS, prepared
from tests.unit.homes import search_engine
from visearch.categories import Registry
from visearch.index import open_index
from visearch.index.semantic import MODEL_PACKAGE
from visearch.index.versions import schema_hash
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.stages.upsert import run_upsert
from visearch.storage import LocalStore


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's package as if never installed: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, MODEL_PACKAGE, None)


def test_a_word_in_no_caption_finds_footwear_by_meaning(engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = engine.search_text(TINY, "footwear", k=2 * TINY_PER_CLASS)
    assert answer.score_kind == "rrf"
    assert {r.cls for r in answer.results} == {"Sneaker", "Ankle-boot"}
    # BM25 alone (the same index, the model absent): no caption holds the word.
    absent(monkeypatch)
    alone = engine.search_text(TINY, "footwear", k=2 * TINY_PER_CLASS)
    assert alone.score_kind == "bm25" and alone.results == []


def test_without_the_model_bm25_still_answers(engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    absent(monkeypatch)
    answer = engine.search_text(TINY, "boots", k=4 * TINY_PER_CLASS)
    assert answer.score_kind == "bm25" and len(answer.results) == TINY_PER_CLASS
    assert {r.cls for r in answer.results} == {"Ankle-boot"}


def test_without_the_model_the_pipeline_builds_a_bm25_index(
    home: Settings, registry: Registry, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent(monkeypatch)
    category = registry.get(TINY)
    manifest_dir, model, embeddings = prepared(home, registry, store, 32)
    result = run_upsert(home, store, category, manifest_dir, model, embeddings)
    index = open_index(home)
    try:
        live = index.require_live(TINY)
        assert live.name == result.collection and live.schema == schema_hash(category.fields, category.captions, "")
        engine = SearchEngine(home, registry, store, index)
        answer = engine.search_text(TINY, "boot", k=4 * TINY_PER_CLASS)
        assert answer.score_kind == "bm25" and {r.cls for r in answer.results} == {"Ankle-boot"}
        assert not any(c.index_lag for c in engine.categories() if c.name == TINY)
    finally:
        index.close()
