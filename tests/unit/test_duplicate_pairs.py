"""Near-duplicate pairs as arrays: the same pairs as the dicts they replace, in a fraction of the memory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from visearch.duplicate_pairs import DuplicatePairs
from visearch.neighbours import NeighbourStats, load_stats, pairs_key, save_stats, stats_key
from visearch.storage import LocalStore


def random_pairs(count: int, points: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(int=int(n))) for n in rng.integers(0, 2**63, size=points)]
    chosen = rng.integers(0, points, size=(count, 2))
    scores = np.round(rng.uniform(0.9, 1.0, size=count), 6)
    return [{"a": ids[a], "b": ids[b], "similarity": float(s)} for (a, b), s in zip(chosen, scores, strict=True)]


def test_the_arrays_read_back_as_the_dicts_they_were_made_of() -> None:
    pairs = [*random_pairs(500, 300), {"a": "café", "b": "x", "similarity": 0.97}]
    held = DuplicatePairs.of(pairs)
    assert len(held) == len(pairs)
    assert list(held) == pairs and held == pairs
    assert held[0] == pairs[0] and held[-1] == pairs[-1]
    assert held[10:20] == pairs[10:20] and held[495:510] == pairs[495:510]
    with pytest.raises(IndexError):
        held[len(pairs)]
    assert DuplicatePairs.from_bytes(held.to_bytes()) == pairs
    assert held != pairs[:-1] and held != [*pairs[:-1], {**pairs[-1], "similarity": 0.98}]
    assert DuplicatePairs.of([]) == [] and len(DuplicatePairs.from_bytes(DuplicatePairs.of([]).to_bytes())) == 0


def test_a_pair_costs_sixteen_bytes_and_an_id_is_stored_once() -> None:
    pairs = random_pairs(50_000, 10_000)
    held = DuplicatePairs.of(pairs)
    ids = len({pair["a"] for pair in pairs} | {pair["b"] for pair in pairs})
    assert held.nbytes <= 16 * len(pairs) + 36 * ids


def test_the_store_keeps_the_pairs_beside_a_json_that_counts_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    stats = NeighbourStats("c__v1", 300, list(np.linspace(0.5, 1.0, 101)), 0.9, random_pairs(200, 300))
    save_stats(store, stats)
    header = json.loads(store.get_bytes(stats_key("c__v1")))
    assert header["duplicates"] == 200 and store.exists(pairs_key("c__v1"))
    assert load_stats(store, "c__v1") == stats
    assert NeighbourStats.from_json(stats.to_json()) == stats  # the run's artifact: the pairs inline
