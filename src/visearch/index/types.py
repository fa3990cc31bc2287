"""Value types shared by the index and its backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# The HNSW graph of every collection, on both engines: denser than Qdrant's default (16, 100),
# recall@10 0.62 -> 0.88 at ef 256 on 100k clustered vectors for ~15 % longer builds
# (benchmarks/results/index.md). Below ~10 MB of vectors per segment the engines scan exactly.
HNSW_M = 32
EF_CONSTRUCT = 256


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]

    @property
    def similarity_percent(self) -> float:
        return round(max(0.0, self.score) * 100, 2)


@dataclass
class Record:
    id: str
    payload: dict[str, Any]
    vector: list[float] | None


class IndexBackend(Protocol):
    """The primitives :class:`visearch.index.VectorIndex` builds on; one implementation per engine.

    ``collection`` arguments name a collection, never an alias: a reader resolves the alias once
    and then queries that collection, so one request never mixes two versions.
    """

    def collections(self) -> list[str]: ...
    def ping(self) -> None:
        """Raise unless the engine answers one cheap call, within a health probe's short timeout."""
        ...

    def alias(self, name: str) -> str | None: ...
    def set_alias(self, name: str, collection: str) -> None: ...
    def create_collection(self, name: str, dim: int) -> None: ...
    def delete_collection(self, name: str) -> None: ...
    def upsert(
        self, collection: str, ids: list[str] | Any, vectors: np.ndarray, payloads: Any, batch_size: int
    ) -> None: ...
    def seal(self, collection: str) -> None: ...
    def is_being_written(self, collection: str) -> bool: ...
    def count(self, collection: str) -> int: ...
    def retrieve(self, collection: str, ids: Any, *, with_payload: bool, with_vector: bool) -> list[Record]: ...
    def query(
        self,
        collection: str,
        vector: Any,
        *,
        k: int,
        min_score: float | None,
        class_filter: str | None,
        exclude_id: str | None,
    ) -> list[Hit]: ...
    def scroll(self, collection: str, limit: int) -> list[Record]: ...
    def close(self) -> None: ...
