"""Value types shared by the index and its backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# The HNSW graph of every collection, on both engines: Qdrant's default (16, 100). On real
# embeddings (the demo model's, benchmarks/results/index-realistic-tuning.md) it keeps recall@10
# >= 0.999 from query ef 64 at 100k points and builds 2.6x faster than (32, 256), which bought
# recall only on isotropic synthetic clusters (index.md). Below ~10 MB of vectors per segment
# the engines scan exactly.
HNSW_M = 16
EF_CONSTRUCT = 100
# Points per upsert batch: the embedded engine flushes each batch to disk (it has no WAL), so
# 2048 instead of 256 cut writing 100k points from 50 s to 7 s (index-realistic-tuning.md).
UPSERT_BATCH = 2048


@dataclass
class Hit:
    """One query result: point id, cosine score and payload."""

    id: str
    score: float
    payload: dict[str, Any]

    @property
    def similarity_percent(self) -> float:
        """The score as a percentage: ``max(score, 0) * 100``, rounded to two decimals."""
        return round(max(0.0, self.score) * 100, 2)


@dataclass
class Record:
    """One stored point: id, payload, and its vector when asked for."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None


class IndexBackend(Protocol):
    """The primitives :class:`visearch.index.VectorIndex` builds on; one implementation per engine.

    ``collection`` arguments name a collection, never an alias: a reader resolves the alias once
    and then queries that collection, so one request never mixes two versions.
    """

    def collections(self) -> list[str]:
        """Names of all collections (not aliases)."""
        ...

    def ping(self) -> None:
        """Raise unless the engine answers one cheap call, within a health probe's short timeout."""
        ...

    def alias(self, name: str) -> str | None:
        """The collection the alias ``name`` points at, or None if there is no such alias."""
        ...

    def set_alias(self, name: str, collection: str) -> None:
        """Point the alias at ``collection`` (creating it) in one atomic operation."""
        ...

    def create_collection(self, name: str, dim: int) -> None:
        """Create an empty collection of ``dim``-dimensional cosine vectors."""
        ...

    def delete_collection(self, name: str) -> None:
        """Delete a collection and its points."""
        ...

    def upsert(
        self, collection: str, ids: list[str] | Any, vectors: np.ndarray, payloads: Any, batch_size: int
    ) -> None:
        """Write points (ids, vectors, payloads) in batches of ``batch_size``."""
        ...

    def seal(self, collection: str) -> None:
        """Finish a version after its last write, before it goes live."""
        ...

    def is_being_written(self, collection: str) -> bool:
        """Whether a pipeline is still writing the collection."""
        ...

    def count(self, collection: str) -> int:
        """Exact number of points in the collection."""
        ...

    def retrieve(self, collection: str, ids: Any, *, with_payload: bool, with_vector: bool) -> list[Record]:
        """The points with these ids that exist, with payload and vector as asked."""
        ...

    def query(
        self,
        collection: str,
        vector: Any,
        *,
        k: int,
        min_score: float | None,
        class_filter: str | None,
        exclude_id: str | None,
    ) -> list[Hit]:
        """The ``k`` nearest points, best first, above ``min_score``, filtered by class and excluded id."""
        ...

    def scroll(self, collection: str, limit: int) -> list[Record]:
        """The first ``limit`` points with their payloads (no vectors)."""
        ...

    def close(self) -> None:
        """Release the engine's resources (open shards, client connections)."""
        ...
