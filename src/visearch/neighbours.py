"""Honest similarity: each category's own nearest-neighbour similarities, measured once per index version.

At upsert, after the last write and before the alias swap, every point asks the index for its
nearest neighbours (itself excluded, in batches of engine queries). From the answers:

* the distribution of nearest-neighbour cosine similarities, kept as its 101 percentiles: a hit's
  ``calibrated`` value is where its similarity falls in it (0-100), and a query whose best hit
  lies below the ``Settings.visearch_unusual_percentile``-th percentile is "unlike anything in
  this category";
* the near-duplicate pairs: neighbours above the category's ``duplicate_threshold``.

Both are stored in the object store under ``index/<collection>/``: the percentiles as JSON
(``neighbours.json``), the pairs as arrays beside it (``duplicates.npz``, :mod:`visearch.duplicate_pairs`;
statistics stored before kept them inline in the JSON, and still read). The collection name carries
the version, so a re-run finds the files and does not measure again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visearch.duplicate_pairs import DuplicatePairs
from visearch.index import SearchRequest, VectorIndex
from visearch.storage import ObjectStore

NEIGHBOURS = 10  # asked per point: enough to find a point's near-duplicates, cheap in one batch
BATCH = 256  # queries per engine call
PERCENTILES = np.arange(101)


def stats_key(collection: str) -> str:
    """Object-store key of a collection version's neighbour statistics."""
    return f"index/{collection}/neighbours.json"


def pairs_key(collection: str) -> str:
    """Object-store key of a collection version's near-duplicate pairs (arrays)."""
    return f"index/{collection}/duplicates.npz"


@dataclass(frozen=True)
class NeighbourStats:
    """A collection's nearest-neighbour similarity percentiles and near-duplicate pairs.

    Attributes:
        collection: the index version measured.
        points: points measured.
        quantiles: the 0th..100th percentile of nearest-neighbour cosine similarity ([] under 2 points).
        threshold: the duplicate threshold used.
        duplicates: ``{"a": id, "b": id, "similarity": cosine}``, most similar first, each pair once.
    """

    collection: str
    points: int
    quantiles: list[float]
    threshold: float
    duplicates: DuplicatePairs = field(default_factory=lambda: DuplicatePairs.of([]))
    _levels: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.duplicates, DuplicatePairs):  # a list of dicts (measured, or inline JSON)
            object.__setattr__(self, "duplicates", DuplicatePairs.of(self.duplicates))
        # Guard rounding: non-decreasing. Once, not per hit (ten hits a query).
        object.__setattr__(self, "_levels", np.maximum.accumulate(np.asarray(self.quantiles, dtype=np.float64)))

    def calibrated(self, score: float) -> float | None:
        """Where ``score`` stands among the nearest-neighbour similarities, 0-100 (one decimal)."""
        if not self.quantiles:
            return None
        return round(float(np.interp(score, self._levels, PERCENTILES)), 1)

    def similarity_at(self, percentile: float) -> float | None:
        """The nearest-neighbour similarity at ``percentile`` (0-100); None without statistics."""
        if not self.quantiles:
            return None
        return float(np.interp(percentile, PERCENTILES, self.quantiles))

    def header(self) -> dict[str, Any]:
        """Every field but the pairs."""
        return {
            "collection": self.collection,
            "points": self.points,
            "quantiles": self.quantiles,
            "threshold": self.threshold,
        }

    def to_json(self) -> str:
        """The statistics as JSON text, the pairs inline (the run's artifact)."""
        return json.dumps({**self.header(), "duplicates": list(self.duplicates)}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> NeighbourStats:
        """Statistics read back from :meth:`to_json`."""
        return cls(**json.loads(text))


def measure(
    index: VectorIndex,
    collection: str,
    ids: Sequence[str],
    *,
    threshold: float,
    neighbours: int = NEIGHBOURS,
    batch: int = BATCH,
) -> NeighbourStats:
    """Ask the index once for every point's nearest neighbours and derive the statistics."""
    nearest: list[float] = []
    pairs: dict[tuple[str, str], float] = {}
    for lo in range(0, len(ids), batch):
        vectors = index.vectors(collection, ids[lo : lo + batch])
        requests = [SearchRequest(neighbours, vector=vector, exclude_ids=[pid]) for pid, vector in vectors.items()]
        for pid, hits in zip(vectors, index.search_batch(collection, requests), strict=True):
            if hits:
                nearest.append(hits[0].score)
            for hit in hits:
                if hit.score >= threshold:
                    pairs[min(pid, hit.id), max(pid, hit.id)] = round(hit.score, 6)
    quantiles = [round(float(q), 6) for q in np.percentile(nearest, PERCENTILES)] if len(nearest) > 1 else []
    duplicates = [
        {"a": a, "b": b, "similarity": score}
        for (a, b), score in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    ]
    return NeighbourStats(collection, len(ids), quantiles, threshold, DuplicatePairs.of(duplicates))


def ensure_stats(
    index: VectorIndex, store: ObjectStore, collection: str, ids: Sequence[str], *, threshold: float
) -> NeighbourStats:
    """The collection's statistics: read back if a run already stored them, else measured and stored."""
    stored = load_stats(store, collection)
    if stored is not None and stored.threshold == threshold and stored.points == len(ids):
        return stored
    stats = measure(index, collection, ids, threshold=threshold)
    save_stats(store, stats)
    return stats


def save_stats(store: ObjectStore, stats: NeighbourStats) -> None:
    """Store the pairs, then the JSON that counts them: a reader never finds the JSON without its pairs."""
    store.put_bytes(pairs_key(stats.collection), stats.duplicates.to_bytes())
    header = {**stats.header(), "duplicates": len(stats.duplicates)}
    store.put_bytes(stats_key(stats.collection), json.dumps(header).encode())


def load_stats(store: ObjectStore, collection: str) -> NeighbourStats | None:
    """The stored statistics of a collection version, or None (a version built before they existed)."""
    key = stats_key(collection)
    if not store.exists(key):
        return None
    data = json.loads(store.get_bytes(key))
    if isinstance(data["duplicates"], int):  # a count: the pairs are in their own file
        data["duplicates"] = DuplicatePairs.from_bytes(store.get_bytes(pairs_key(collection)))
    return NeighbourStats(**data)
