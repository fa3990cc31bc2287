"""Nearest-neighbour statistics: measured once per index version, stored, logged, read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import TINY
from visearch.index import open_index, point_id
from visearch.neighbours import NeighbourStats, ensure_stats, load_stats, measure, stats_key
from visearch.settings import Settings
from visearch.storage import LocalStore
from visearch.tracking import Tracker


def test_measure_finds_duplicates_and_the_similarity_distribution(tmp_path: Path) -> None:
    settings = Settings(visearch_home=tmp_path / "home", _env_file=None)
    index = open_index(settings)
    store = LocalStore(settings.objects_dir)
    try:
        version = index.create("dups", "m", "d", 6)
        vectors = np.random.default_rng(3).normal(size=(20, 6)).astype(np.float32)
        vectors[7] = vectors[3] * 2  # the same direction: cosine 1, a duplicate of point 3
        vectors[11] = vectors[3] + 0.01  # nearly the same
        ids = [point_id("dups", f"{i}.png") for i in range(20)]
        index.upsert(version.name, ids, vectors, [{"class": "c", "file": f"{i}.png"} for i in range(20)])
        index.seal(version.name)

        stats = measure(index, version.name, ids, threshold=0.99)
        pairs = {frozenset((pair["a"], pair["b"])) for pair in stats.duplicates}
        assert pairs == {frozenset(p) for p in [(ids[3], ids[7]), (ids[3], ids[11]), (ids[7], ids[11])]}
        assert stats.duplicates[0]["similarity"] >= stats.duplicates[-1]["similarity"]
        # The neighbour similarities, as numpy sees them: each point's best other point.
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        cosine = unit @ unit.T
        np.fill_diagonal(cosine, -2)
        nearest = cosine.max(axis=1)
        assert np.allclose(stats.quantiles, np.percentile(nearest, np.arange(101)), atol=1e-5)
        assert stats.calibrated(1.0) == 100.0 and stats.calibrated(-1.0) == 0.0
        # Each pair of mutual neighbours repeats its value, so the median sits on a flat stretch.
        calibrated = stats.calibrated(float(np.median(nearest)))
        assert calibrated is not None and 40 <= calibrated <= 60

        # Stored once: a second call reads the stored statistics instead of measuring again.
        first = ensure_stats(index, store, version.name, ids, threshold=0.99)
        stored = json.loads(store.get_bytes(stats_key(version.name)))
        stored["duplicates"] = []
        store.put_bytes(stats_key(version.name), json.dumps(stored).encode())
        assert ensure_stats(index, store, version.name, ids, threshold=0.99).duplicates == []
        assert first.duplicates == stats.duplicates
        # Another threshold measures again.
        assert ensure_stats(index, store, version.name, ids, threshold=0.999).threshold == 0.999
    finally:
        index.close()


def test_the_pipeline_stores_and_logs_the_statistics(indexed_home: Settings) -> None:
    index = open_index(indexed_home)
    try:
        live = index.require_live(TINY)
    finally:
        index.close()
    stats = load_stats(LocalStore(indexed_home.objects_dir), live.name)
    assert isinstance(stats, NeighbourStats) and stats.collection == live.name

    tracker = Tracker.from_settings(indexed_home)
    [run] = tracker.client.search_runs([tracker.experiment_id(TINY)], max_results=1)
    assert run.data.metrics["index.nn_similarity_p50"] == stats.similarity_at(50)
    assert run.data.metrics["index.duplicate_pairs"] == len(stats.duplicates)
    assert [a.path for a in tracker.client.list_artifacts(run.info.run_id, "index")] == ["index/neighbours.json"]
