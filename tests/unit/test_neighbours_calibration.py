"""Calibrated similarity and the near-duplicate list, on known numbers and a real embedded index (fast).

A result's ``calibrated`` value and the "unusual" floor both come from a category's nearest-neighbour
percentiles; these tests fix what a user reads for given percentiles and given points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visearch.index import open_index, point_id
from visearch.neighbours import NeighbourStats, ensure_stats, load_stats, measure, stats_key
from visearch.settings import Settings
from visearch.storage import LocalStore

# Percentile p of the nearest-neighbour similarity is 0.5 + p / 250: 0.5 at 0, 0.7 at 50, 0.9 at 100.
LINEAR = [0.5 + p / 250 for p in range(101)]


def stats(quantiles: list[float]) -> NeighbourStats:
    return NeighbourStats("c__v1", 100, quantiles, 0.97)


def test_calibrated_is_the_percentile_a_similarity_falls_at() -> None:
    linear = stats(LINEAR)
    assert linear.calibrated(0.7) == 50.0
    assert linear.calibrated(0.5) == 0.0 and linear.calibrated(0.9) == 100.0
    assert linear.calibrated(0.61) == 27.5  # one decimal
    assert linear.calibrated(0.6123) == 28.1
    # Outside the measured range: clipped to 0 and 100.
    assert linear.calibrated(0.2) == 0.0 and linear.calibrated(1.0) == 100.0


def test_similarity_at_is_the_similarity_of_a_percentile() -> None:
    linear = stats(LINEAR)
    assert linear.similarity_at(50) == pytest.approx(0.7)
    assert linear.similarity_at(1) == pytest.approx(0.504)
    assert linear.similarity_at(2.5) == pytest.approx(0.51)
    assert linear.similarity_at(100) == pytest.approx(0.9)


def test_without_statistics_nothing_is_calibrated_and_there_is_no_floor() -> None:
    empty = stats([])
    assert empty.calibrated(0.8) is None
    assert empty.similarity_at(1) is None


def test_quantiles_out_of_order_by_rounding_still_calibrate_monotonically() -> None:
    # Stored quantiles are rounded to 6 places; a dip must not make a higher score rank lower.
    dipped = [*LINEAR[:50], LINEAR[45], *LINEAR[51:]]
    values = [stats(dipped).calibrated(s) for s in np.linspace(0.5, 0.9, 81)]
    assert values == sorted(values)
    assert stats(dipped).calibrated(0.7) == 50.5  # the dip levelled to its neighbour, not read as a fold


def test_statistics_survive_the_object_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    original = NeighbourStats("c__v1", 3, LINEAR, 0.95, [{"a": "x", "b": "y", "similarity": 0.99}])
    assert load_stats(store, "c__v1") is None
    store.put_bytes(stats_key("c__v1"), original.to_json().encode())
    assert stats_key("c__v1") == "index/c__v1/neighbours.json"
    assert load_stats(store, "c__v1") == original
    assert NeighbourStats.from_json(original.to_json()) == original


def unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return Settings(visearch_home=tmp_path / "home", _env_file=None)


def indexed(home: Settings, vectors: np.ndarray) -> tuple[object, str, list[str]]:
    index = open_index(home)
    version = index.create("cal", "m", "d", vectors.shape[1])
    ids = [point_id("cal", f"{i}.png") for i in range(len(vectors))]
    index.upsert(version.name, ids, vectors, [{"class": "c", "file": f"{i}.png"} for i in range(len(vectors))])
    index.seal(version.name)
    return index, version.name, ids


def test_measure_lists_each_duplicate_pair_once_most_similar_first(home: Settings) -> None:
    # a, b, c in one direction (a-b exactly, c slightly off), d and e far from them and from each other.
    vectors = unit([[1, 0, 0], [2, 0, 0], [1, 0.05, 0], [0, 1, 0], [0, 0, 1]])
    index, collection, ids = indexed(home, vectors)
    try:
        # batch=2: the points are asked in three engine calls; neighbours=2 per point.
        found = measure(index, collection, ids, threshold=0.99, neighbours=2, batch=2)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    near = round(float(vectors[0] @ vectors[2]), 6)
    a, b, c = ids[:3]
    assert found.points == 5 and found.collection == collection and found.threshold == 0.99
    assert [(p["a"], p["b"]) for p in found.duplicates[:1]] == [(min(a, b), max(a, b))]
    assert found.duplicates[0]["similarity"] == pytest.approx(1.0)
    assert {frozenset((p["a"], p["b"])) for p in found.duplicates} == {
        frozenset((a, b)),
        frozenset((a, c)),
        frozenset((b, c)),
    }
    assert [p["similarity"] for p in found.duplicates[1:]] == [near, near]
    assert all(p["a"] < p["b"] for p in found.duplicates)
    # Every point's nearest other point: three at ~1, d and e at 0 (orthogonal to everything).
    assert found.quantiles[0] == pytest.approx(0.0, abs=1e-6) and found.quantiles[100] == pytest.approx(1.0)
    assert len(found.quantiles) == 101


def test_a_pair_exactly_at_the_threshold_is_a_duplicate(home: Settings) -> None:
    vectors = unit([[1, 0], [0.8, 0.6], [-1, 0]])
    index, collection, ids = indexed(home, vectors)
    try:
        at = measure(index, collection, ids, threshold=0.8)  # type: ignore[arg-type]
        above = measure(index, collection, ids, threshold=0.81)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    assert [p["similarity"] for p in at.duplicates] == [pytest.approx(0.8)]
    assert above.duplicates == []


def test_one_point_has_no_distribution(home: Settings) -> None:
    index, collection, ids = indexed(home, unit([[1, 0]]))
    try:
        alone = measure(index, collection, ids, threshold=0.9)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    assert alone.quantiles == [] and alone.points == 1 and alone.calibrated(0.5) is None


def test_stored_statistics_are_measured_again_when_the_points_changed(home: Settings, tmp_path: Path) -> None:
    vectors = unit([[1, 0], [0.8, 0.6], [0, 1]])
    index, collection, ids = indexed(home, vectors)
    store = LocalStore(tmp_path / "objects")
    try:
        ensure_stats(index, store, collection, ids[:2], threshold=0.9)  # type: ignore[arg-type]
        again = ensure_stats(index, store, collection, ids, threshold=0.9)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    assert again.points == 3
    assert load_stats(store, collection) == again


def test_duplicates_are_ordered_by_similarity_then_by_ids(home: Settings) -> None:
    # Four images near one direction at known angles: six pairs, four similarity levels, ties between ids.
    angles = [0.0, 0.1, 0.2, 0.3]
    vectors = unit([[np.cos(a), np.sin(a), 0] for a in angles])
    index, collection, ids = indexed(home, vectors)
    try:
        found = measure(index, collection, ids, threshold=0.9)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    expected = sorted(
        (
            (-round(float(vectors[i] @ vectors[j]), 6), min(ids[i], ids[j]), max(ids[i], ids[j]))
            for i in range(4)
            for j in range(i + 1, 4)
        ),
    )
    got = [(-p["similarity"], p["a"], p["b"]) for p in found.duplicates]
    assert [(round(s, 4), a, b) for s, a, b in got] == [(round(s, 4), a, b) for s, a, b in expected]
    # Similarities are stored to 6 places, as are the percentiles.
    assert all(p["similarity"] == round(p["similarity"], 6) for p in found.duplicates)
    assert all(q == round(q, 6) for q in found.quantiles) and any(q != round(q, 5) for q in found.quantiles)


def test_two_points_make_a_distribution_one_measured_point_does_not(home: Settings) -> None:
    vectors = unit([[1, 0], [0.6, 0.8]])
    index, collection, ids = indexed(home, vectors)
    try:
        both = measure(index, collection, ids, threshold=0.99)  # type: ignore[arg-type]
        one = measure(index, collection, ids[:1], threshold=0.99)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    assert both.quantiles == [pytest.approx(0.6)] * 101
    assert one.quantiles == [] and one.points == 1


def test_identical_images_are_duplicates_at_the_highest_threshold(home: Settings) -> None:
    vectors = unit([[1, 0, 0], [3, 0, 0], [0, 1, 0]])
    index, collection, ids = indexed(home, vectors)
    try:
        found = measure(index, collection, ids, threshold=1.0)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    assert [(p["a"], p["b"], p["similarity"]) for p in found.duplicates] == [(min(ids[:2]), max(ids[:2]), 1.0)]


def test_equally_similar_pairs_are_listed_by_their_ids(home: Settings) -> None:
    # Three copies of one image: three pairs at exactly 1.0, whatever order the points are measured in.
    index, collection, ids = indexed(home, unit([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1]]))
    try:
        found = measure(index, collection, sorted(ids, reverse=True), threshold=0.99)  # type: ignore[arg-type]
    finally:
        index.close()  # type: ignore[attr-defined]
    copies = sorted(ids[:3])
    assert [(p["a"], p["b"]) for p in found.duplicates] == [
        (copies[0], copies[1]),
        (copies[0], copies[2]),
        (copies[1], copies[2]),
    ]
