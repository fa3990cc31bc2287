"""The search primitives side by side: the embedded engine (qdrant-edge), qdrant-client ``:memory:``,
and a Qdrant server too when ``QDRANT_URL`` is set.

The same small real collection (unit vectors, caption text, payload indexes) is written to both
engines; every primitive (filtered nearest with offset, text, hybrid, recommend, MMR, best per
class, facet, batch) must give the same answer on both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from tests.unit.index.modes import index_settings
from visearch.errors import InvalidQueryError
from visearch.index import Hit, SearchRequest, VectorIndex, open_index, point_id
from visearch.index.filters import parse_filter
from visearch.index.text import query_vector

DIM = 8
N = 60
CLASSES = ["boot", "bag", "dress", "shirt"]
COLOURS = ["red", "green", "blue"]
FIELDS = {"colour": "keyword", "size": "integer", "weight": "float", "note": "text"}
FILTERABLE = {"class": "keyword", "label": "integer", **FIELDS}
# Every engine answers as the embedded one; a server joins when one is configured.
COMPARED = ("embedded", "memory", "remote") if os.environ.get("QDRANT_URL") else ("embedded", "memory")


def build(mode: str, home: Path) -> tuple[VectorIndex, str, list[str], np.ndarray]:
    index = open_index(index_settings(mode, home))
    version = index.create("prims", "m", "d", DIM, FIELDS)
    vectors = np.random.default_rng(7).normal(size=(N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [point_id("prims", f"{i}.png") for i in range(N)]
    payloads = [
        {
            "file": f"{i}.png",
            "class": CLASSES[i % 4],
            "label": i % 4,
            "colour": COLOURS[i % 3],
            "size": i,
            "weight": i / 10,
            # Caption lengths differ within a class, so BM25 scores do not tie (ties may break differently).
            "note": " ".join([f"{COLOURS[i % 3]} {CLASSES[i % 4]}"] + ["plain"] * (i // 4)),
        }
        for i in range(N)
    ]
    index.upsert(version.name, ids, vectors, payloads, batch_size=16, captions=["note"])
    index.seal(version.name)
    return index, version.name, ids, vectors


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[VectorIndex, str, list[str], np.ndarray]]]:
    built = {mode: build(mode, tmp_path_factory.mktemp(mode)) for mode in COMPARED}
    yield built
    for index, collection, *_ in built.values():
        index.delete(collection)  # a server outlives the test
        index.close()


def both(engines: dict, run) -> list[list[Hit]]:  # type: ignore[no-untyped-def,type-arg]
    """``run(index, collection, ids, vectors)`` on every engine; asserts the same ids and scores as embedded.

    Returns the embedded and the ``:memory:`` answers.
    """
    answers = {mode: run(*engines[mode]) for mode in COMPARED}
    edge = answers["embedded"]
    for mode in COMPARED[1:]:
        assert [h.id for h in answers[mode]] == [h.id for h in edge], mode
        assert [h.score for h in answers[mode]] == pytest.approx([h.score for h in edge], abs=1e-4), mode
    return [edge, answers["memory"]]


def test_filtered_nearest_with_offset_and_min_score(engines: dict) -> None:  # type: ignore[type-arg]
    flt = parse_filter(
        {"must": [{"key": "colour", "match": {"any": ["red", "blue"]}}, {"key": "size", "range": {"gte": 10}}]},
        FILTERABLE,
    )

    def run(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        first = index.search(collection, SearchRequest(10, vector=vectors[0].tolist(), filter=flt))
        page = index.search(collection, SearchRequest(5, vector=vectors[0].tolist(), filter=flt, offset=5))
        assert [h.id for h in page] == [h.id for h in first[5:]]
        return first

    hits, _ = both(engines, run)
    assert len(hits) == 10
    assert all(h.payload["colour"] in ("red", "blue") and h.payload["size"] >= 10 for h in hits)


def test_text_search_finds_only_points_holding_the_word(engines: dict) -> None:  # type: ignore[type-arg]
    words = query_vector("boots")  # stemmed like the documents: "boot"

    def run(index: VectorIndex, collection: str, *_: object) -> list[Hit]:
        return index.search(collection, SearchRequest(N, text=words))

    hits, _ = both(engines, run)
    assert len(hits) == N // 4 and all("boot" in h.payload["note"] for h in hits)
    # BM25: the shorter the caption, the higher the score.
    assert len(hits[0].payload["note"]) < len(hits[-1].payload["note"])


def test_hybrid_recommend_mmr_and_text_match(engines: dict) -> None:  # type: ignore[type-arg]
    text_match = parse_filter({"must": [{"key": "note", "match": {"text": "green"}}]}, FILTERABLE)

    def hybrid(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        return index.search(collection, SearchRequest(8, vector=vectors[3].tolist(), text=query_vector("dress")))

    def recommend(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        request = SearchRequest(
            8, positives=[vectors[1].tolist()], negatives=[vectors[2].tolist()], exclude_ids=[ids[1], ids[2]]
        )
        return index.search(collection, request)

    def diverse(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        return index.search(collection, SearchRequest(8, vector=vectors[4].tolist(), diversity=0.7))

    def matched(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        return index.search(collection, SearchRequest(30, vector=vectors[4].tolist(), filter=text_match))

    fused, _ = both(engines, hybrid)
    assert fused[0].payload["class"] == "dress" or fused[0].id == engines["embedded"][2][3]
    liked, _ = both(engines, recommend)
    assert not {h.id for h in liked} & set(engines["embedded"][2][1:3])
    spread, _ = both(engines, diverse)
    plain = engines["embedded"][0].search(
        engines["embedded"][1], SearchRequest(8, vector=engines["embedded"][3][4].tolist())
    )
    assert spread[0].id == plain[0].id and [h.id for h in spread] != [h.id for h in plain]
    greens, _ = both(engines, matched)
    assert len(greens) == N // 3 and all(h.payload["colour"] == "green" for h in greens)


def test_best_per_class_facet_and_batch(engines: dict) -> None:  # type: ignore[type-arg]
    def groups(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        return index.best_per_group(collection, SearchRequest(10, vector=vectors[5].tolist()), "class")

    best, _ = both(engines, groups)
    assert sorted(h.payload["class"] for h in best) == sorted(CLASSES)
    index, collection, ids, vectors = engines["embedded"]
    for hit in best:
        only = models.FieldCondition(key="class", match=models.MatchValue(value=hit.payload["class"]))
        top = index.search(collection, SearchRequest(1, vector=vectors[5].tolist()).narrowed(only))
        assert top[0].id == hit.id  # each group's hit is its class's nearest

    reds = parse_filter({"must": [{"key": "colour", "match": {"value": "red"}}]}, FILTERABLE)
    counts = [index.facet(collection, "class", flt=reds) for index, collection, *_ in engines.values()]
    assert counts[0] == counts[1] and sum(c for _, c in counts[0]) == N // 3

    def batch(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        requests = [SearchRequest(3, vector=vectors[i].tolist(), exclude_ids=[ids[i]]) for i in range(4)]
        answers = index.search_batch(collection, requests)
        assert [a[0].id for a in answers] == [index.search(collection, r)[0].id for r in requests]
        return [a[0] for a in answers]

    both(engines, batch)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"must": [{"key": "colour ", "match": {"value": "red"}}]},
            "filter.must[0].key: unknown column 'colour '; filterable: class, colour, label, note, size, weight",
        ),
        ({"must": [{"key": "colour", "range": {"gte": 1}}]}, "filter.must[0].range: column 'colour' is keyword"),
        ({"must": [{"key": "colour", "match": {"text": "red"}}]}, "filter.must[0].match.text: column 'colour' is"),
        (
            {"must": [{"key": "size", "match": {"value": "big"}}]},
            "filter.must[0].match.value: column 'size' is integer",
        ),
        (
            {"must": [{"key": "size", "range": {"gte": "big"}}]},
            "filter.must[0].range.gte: Input should be a valid number",
        ),
        (
            {"should": [{"key": "note", "match": {"value": "red"}}]},
            "filter.should[0].match.value: column 'note' is text",
        ),
        ({"must": [{"key": "size", "range": {}}]}, "filter.must[0].range: give at least one"),
        ({"must": [{"has_id": [1]}]}, "filter.must[0]: only key conditions"),
        ({"colour": "red"}, "filter.colour: Extra inputs are not permitted"),
        ({"must": [{"key": "size", "range": {"gte": 1}}] * 40}, "at most 32 conditions"),
        ({"must": [{"must": [{"must": [{"must": [{"must": []}]}]}]}]}, "nest at most 3 levels"),
        (["red"], "filter must be a JSON object"),
    ],
)
def test_bad_filters_are_refused_naming_the_place(raw: object, message: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        parse_filter(raw, FILTERABLE)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_nested_filter_runs_on_both_engines(engines: dict) -> None:  # type: ignore[type-arg]
    flt = parse_filter(
        {
            "must": [{"should": [{"key": "class", "match": {"value": "bag"}}, {"key": "weight", "range": {"lt": 1}}]}],
            "must_not": [{"key": "colour", "match": {"except": ["red"]}}],
        },
        FILTERABLE,
    )

    def run(index: VectorIndex, collection: str, ids: list[str], vectors: np.ndarray) -> list[Hit]:
        return index.search(collection, SearchRequest(N, vector=vectors[0].tolist(), filter=flt))

    hits, _ = both(engines, run)
    assert hits and all(h.payload["colour"] == "red" for h in hits)
    assert all(h.payload["class"] == "bag" or h.payload["weight"] < 1 for h in hits)


def test_pages_cover_the_collection_once_in_id_order_and_filter_it(engines: dict) -> None:  # type: ignore[type-arg]
    """Browse's primitive: offset pages in the same stable order on every engine, filtered as asked."""
    reds = parse_filter({"must": [{"key": "colour", "match": {"value": "red"}}]}, FILTERABLE)
    pages = {}
    for mode in COMPARED:
        index, collection, ids, _ = engines[mode]
        walked = [r.id for offset in range(0, N, 7) for r in index.page(collection, offset, 7)]
        assert walked == sorted(ids, key=lambda pid: int(pid.replace("-", ""), 16)), mode  # id order, each once
        assert index.page(collection, N, 7) == []
        red = [r for offset in range(0, N, 4) for r in index.page(collection, offset, 4, reds)]
        assert len(red) == N // 3 and {r.payload["colour"] for r in red} == {"red"}, mode
        pages[mode] = (walked, [r.id for r in red])
    assert all(pages[mode] == pages["embedded"] for mode in COMPARED)
