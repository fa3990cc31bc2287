"""Honest similarity: each category's own nearest-neighbour similarities, measured once per index version.

At upsert, after the last write and before the alias swap, every point asks the index for its
nearest neighbours (itself excluded, in batches of engine queries). From the answers:

* the distribution of nearest-neighbour cosine similarities, kept as its 101 percentiles: a hit's
  ``calibrated`` value is where its similarity falls in it (0-100), and a query whose best hit
  lies below the ``Settings.visearch_unusual_percentile``-th percentile is "unlike anything in
  this category";
* the near-duplicate pairs: neighbours above the category's ``duplicate_threshold``.

Both are stored as JSON in the object store under ``index/<collection>/neighbours.json``; the
collection name carries the version, so a re-run finds the file and does not measure again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from visearch.index import SearchRequest, VectorIndex
from visearch.storage import ObjectStore

NEIGHBOURS = 10  # asked per point: enough to find a point's near-duplicates, cheap in one batch
BATCH = 256  # queries per engine call
PERCENTILES = np.arange(101)


def stats_key(collection: str) -> str:
    """Object-store key of a collection version's neighbour statistics."""
    return f"index/{collection}/neighbours.json"


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
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def calibrated(self, score: float) -> float | None:
        """Where ``score`` stands among the nearest-neighbour similarities, 0-100 (one decimal)."""
        if not self.quantiles:
            return None
        quantiles = np.maximum.accumulate(np.asarray(self.quantiles))  # guard rounding: non-decreasing
        return round(float(np.interp(score, quantiles, PERCENTILES)), 1)

    def similarity_at(self, percentile: float) -> float | None:
        """The nearest-neighbour similarity at ``percentile`` (0-100); None without statistics."""
        if not self.quantiles:
            return None
        return float(np.interp(percentile, PERCENTILES, self.quantiles))

    def to_json(self) -> str:
        """The statistics as JSON text."""
        return json.dumps(asdict(self), indent=1)

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
    return NeighbourStats(collection, len(ids), quantiles, threshold, duplicates)


def ensure_stats(
    index: VectorIndex, store: ObjectStore, collection: str, ids: Sequence[str], *, threshold: float
) -> NeighbourStats:
    """The collection's statistics: read back if a run already stored them, else measured and stored."""
    key = stats_key(collection)
    if store.exists(key):
        stats = NeighbourStats.from_json(store.get_bytes(key))
        if stats.threshold == threshold and stats.points == len(ids):
            return stats
    stats = measure(index, collection, ids, threshold=threshold)
    store.put_bytes(key, stats.to_json().encode())
    return stats


def load_stats(store: ObjectStore, collection: str) -> NeighbourStats | None:
    """The stored statistics of a collection version, or None (a version built before they existed)."""
    key = stats_key(collection)
    return NeighbourStats.from_json(store.get_bytes(key)) if store.exists(key) else None
