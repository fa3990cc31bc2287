"""The index adapter's behaviour on every Qdrant client mode that can start here.

One suite, parametrised over the engines ``open_index`` builds: the embedded engine (qdrant-edge,
shard folders and alias files), qdrant-client's ``:memory:`` and a server (remote mode; no Qdrant
server installs here, so it runs only when ``QDRANT_URL`` points at one, e.g. ``docker run -p
6333:6333 qdrant/qdrant``). The same calls on every engine keep the library on one code path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.unit.index.modes import index_settings
from visearch.errors import NotFoundError
from visearch.index import CollectionVersion, VectorIndex, open_index, point_id
from visearch.index.facade import RETRIEVE_BATCH

MODES = ["embedded", "memory", "remote"]
CLASSES = ["boot", "bag", "dress"]
DIM = 8


@pytest.fixture(params=MODES)
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    index = open_index(index_settings(request.param, tmp_path))
    yield index
    index.close()


@pytest.fixture
def category(index: VectorIndex) -> Iterator[str]:
    """A category name of this test only; a server outlives the test, so its collections go after."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for version in index.versions(name):
        index.delete(version.name)


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(
    index: VectorIndex, category: str, model_version: str, *, n: int = 30, seed: int = 0
) -> tuple[str, list[str], np.ndarray]:
    """A new version holding ``n`` points over CLASSES; returns (collection, ids, vectors)."""
    version = index.create(category, model_version, "d4t4h4sh", DIM)
    files = [f"{CLASSES[i % 3]}/{i:03d}.png" for i in range(n)]
    ids = [point_id(category, f) for f in files]
    vectors = unit_vectors(n, seed)
    payloads = [
        {"file": f, "class": f.split("/")[0], "label": i % 3, "image_uri": f"s3://b/{f}"} for i, f in enumerate(files)
    ]
    index.upsert(version.name, ids, vectors, payloads, batch_size=7)
    index.seal(version.name)
    return version.name, ids, vectors


def test_create_is_versioned_and_resumable(index: VectorIndex, category: str) -> None:
    version = index.create(category, "m1", "d4t4h4sh", DIM)
    assert CollectionVersion.parse(version.name) == version
    assert version.name.startswith(f"{category}__")
    assert index.create(category, "m1", "d4t4h4sh", DIM) == version  # same model + data: resume it
    assert index.versions(category) == [version]
    assert index.live(category) is None
    with pytest.raises(NotFoundError):
        index.require_live(category)


def test_upsert_count_and_idempotent_ids(index: VectorIndex, category: str) -> None:
    collection, ids, vectors = fill(index, category, "m1")
    assert index.count(collection) == 30
    assert index.existing_ids(collection, ids[:5] + [point_id(category, "missing.png")]) == set(ids[:5])
    fill(index, category, "m1")  # the same files again overwrite, never duplicate
    assert index.count(collection) == 30


def test_alias_query_filter_threshold_retrieve(index: VectorIndex, category: str) -> None:
    collection, ids, vectors = fill(index, category, "m1")
    index.swap_alias(category, collection)
    assert index.require_live(category).name == collection

    hits = index.query(collection, vectors[4].tolist(), k=5)
    assert len(hits) == 5 and hits[0].id == ids[4] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload["file"] == "bag/004.png" and hits[0].similarity_percent == pytest.approx(100, abs=0.01)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    filtered = index.query(collection, vectors[4].tolist(), k=30, class_filter="dress")
    assert filtered and {h.payload["class"] for h in filtered} == {"dress"} and len(filtered) == 10

    strict = index.query(collection, vectors[4].tolist(), k=30, min_score=0.5)
    assert strict and all(h.score >= 0.5 for h in strict) and len(strict) < 30

    others = index.query(collection, vectors[4].tolist(), k=3, exclude_id=ids[4])
    assert ids[4] not in {h.id for h in others}

    payload, vector = index.get(collection, ids[7], with_vector=True)
    assert payload["class"] == "bag" and vector is not None
    assert np.allclose(vector, vectors[7], atol=1e-5)
    with pytest.raises(NotFoundError):
        index.get(collection, point_id(category, "missing.png"))
    with pytest.raises(NotFoundError):
        index.get(collection, "not-a-uuid")
    assert len(index.sample(collection, 4)) == 4


def test_alias_swap_rollback_and_drop_old(index: VectorIndex, category: str) -> None:
    first, *_ = fill(index, category, "m1", n=6)
    index.swap_alias(category, first)
    time.sleep(1.05)  # version names carry the creation second; two versions need two seconds
    second, ids, vectors = fill(index, category, "m2", n=9, seed=1)
    index.swap_alias(category, second)
    assert index.require_live(category).model_version == "m2"
    assert index.count(index.require_live(category).name) == 9

    back = index.rollback(category)
    assert back.name == first and index.require_live(category).name == first and index.count(first) == 6
    with pytest.raises(NotFoundError):
        index.rollback(category)  # nothing older than the first

    index.swap_alias(category, second)
    assert index.drop_old(category, keep=1) == [first]
    assert [v.name for v in index.versions(category)] == [second]
    assert index.drop_old(category, keep=0) == []  # never the live one
    assert index.query(second, vectors[0].tolist(), k=1)[0].id == ids[0]


def test_lookups_of_many_ids_span_engine_calls_and_skip_bad_ids(index: VectorIndex, category: str) -> None:
    collection, ids, vectors = fill(index, category, "m1", n=6)
    missing = [point_id(category, f"missing/{i}.png") for i in range(RETRIEVE_BATCH + 10)]
    asked = missing[:RETRIEVE_BATCH] + ids[:3] + missing[RETRIEVE_BATCH:] + ids[3:]  # hits in both engine calls
    assert index.existing_ids(collection, asked) == set(ids)
    found = index.vectors(collection, [*asked, "not-a-uuid"])  # one bad id fails nothing
    assert sorted(found) == sorted(ids)
    assert all(np.allclose(found[pid], vectors[i], atol=1e-5) for i, pid in enumerate(ids))
    assert [record.id for record in index.records(collection, [ids[2], missing[0]])] == [ids[2]]
    assert index.points(collection) == 6 and index.status(collection) == "6 points"


def test_rollback_to_a_named_version(index: VectorIndex, category: str) -> None:
    first, *_ = fill(index, category, "m1", n=4)
    second, *_ = fill(index, category, "m2", n=5, seed=1)
    index.swap_alias(category, second)
    with pytest.raises(NotFoundError, match="no index version 'nope'"):
        index.rollback(category, to="nope")
    assert index.rollback(category, to=first).name == first
    assert index.require_live(category).model_version == "m1"
