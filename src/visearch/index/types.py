"""Value types shared by the index and its backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from qdrant_client import models

# The HNSW graph of every collection, on both engines: Qdrant's default (16, 100). On real
# embeddings (the demo model's, benchmarks/results/index-realistic-tuning.md) it keeps recall@10
# >= 0.999 from query ef 64 at 100k points and builds 2.6x faster than (32, 256), which bought
# recall only on isotropic synthetic clusters (index.md). Below ~10 MB of vectors per segment
# the engines scan exactly.
# A group-committed write's listener: called with True once the write is on disk, False if it was lost
# (the writer's handle closed unflushed); see ``EdgeBackend.commit``.
Durable = Callable[[bool], None]
HNSW_M = 16
EF_CONSTRUCT = 100
# Points per upsert batch (one request to a server; the embedded engine flushes every
# edge.FLUSH_POINTS): 2048 instead of 256 cut writing 100k points from 50 s to 7 s when every
# batch was flushed (index-realistic-tuning.md).
UPSERT_BATCH = 2048
TEXT_VECTOR = "captions"  # the sparse vector: BM25 of a point's caption text (IDF applied by the engine)
# The dense multivector (MaxSim) of a point's caption meaning (visearch.index.semantic), in
# collections built with it: a query scores by its best cosine over the point's caption texts.
SEMANTIC_VECTOR = "captions_semantic"
SEMANTIC_DIM = 384  # all-MiniLM-L6-v2
# A caption joins the semantic list of a text query from this cosine on: related words scored
# 0.32-0.78 on the demo's captions, unrelated ones ("weather forecast", "qwerty") at most 0.28, so a
# query that means nothing in the category still finds nothing (benchmarks/results/caption-search.md).
SEMANTIC_MIN_SCORE = 0.3
# Hybrid search fuses the rankings (image, BM25 and caption meaning, those asked) with Reciprocal
# Rank Fusion, equal weights: score = sum over the lists of 1 / (RRF_K + rank). 60 is the constant of the RRF paper
# (Cormack et al. 2009); each list contributes its best HYBRID_CANDIDATES hits (at least k + offset).
RRF_K = 60
HYBRID_CANDIDATES = 100
# MMR: "diverse" re-ranks the nearest MMR_CANDIDATES points by relevance minus similarity to the
# hits already chosen; MMR_DIVERSITY 0.5 weighs both equally (0 = plain nearest, 1 = only spread).
MMR_DIVERSITY = 0.5
MMR_CANDIDATES = 4000
MAX_GROUPS = 1000  # distinct values a best-per-group query can look at (edge: one facet call)


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


@dataclass(frozen=True)
class Sparse:
    """A sparse vector: token ids and their weights (BM25 of caption text)."""

    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Points:
    """Points to write, aligned: ids, vectors, payloads and (for text search) sparse and semantic caption vectors."""

    ids: Sequence[str]
    vectors: np.ndarray
    payloads: Sequence[dict[str, Any]]
    texts: Sequence[Sparse | None] | None = None
    semantics: Sequence[list[list[float]] | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, part: slice) -> Points:
        """The points of a slice (a batch)."""
        texts = None if self.texts is None else self.texts[part]
        semantics = None if self.semantics is None else self.semantics[part]
        return Points(self.ids[part], self.vectors[part], self.payloads[part], texts, semantics)

    def rows(self) -> Iterator[tuple[str, np.ndarray, dict[str, Any], Sparse | None, list[list[float]] | None]]:
        """(id, vector, payload, sparse text vector or None, semantic caption multivector or None) per point."""
        texts = self.texts if self.texts is not None else [None] * len(self.ids)
        semantics = self.semantics if self.semantics is not None else [None] * len(self.ids)
        return zip(self.ids, self.vectors, self.payloads, texts, semantics, strict=True)


@dataclass(frozen=True)
class SearchRequest:
    """One engine query, engine-neutral; every backend runs it with its own primitives.

    What is asked decides the query: ``vector`` → nearest (with ``diversity`` → MMR); ``positives``
    and/or ``negatives`` → recommend, strategy best_score (a point scores by its best positive,
    penalised when a negative is closer); ``text`` alone → BM25 over the ``captions`` sparse
    vector; ``text`` with a dense query → hybrid (RRF of both, see ``RRF_K``). ``semantic`` (the
    query text's meaning, only with ``text``) adds a third list, the caption vectors from
    ``SEMANTIC_MIN_SCORE`` on, to the same fusion. ``min_score`` applies to the dense (cosine)
    part. ``exclude_ids`` never come back.
    """

    limit: int
    vector: list[float] | None = None
    positives: list[list[float]] = field(default_factory=list)
    negatives: list[list[float]] = field(default_factory=list)
    text: Sparse | None = None
    semantic: list[float] | None = None
    filter: models.Filter | None = None
    offset: int = 0
    min_score: float | None = None
    diversity: float | None = None
    exclude_ids: list[str] = field(default_factory=list)

    @property
    def dense(self) -> bool:
        """Whether the request has a dense (image) part."""
        return self.vector is not None or bool(self.positives or self.negatives)

    def __post_init__(self) -> None:
        if not self.dense and self.text is None:
            raise ValueError("a search request needs a vector, examples or text")
        if self.semantic is not None and self.text is None:
            raise ValueError("a semantic query vector comes with its text")
        if self.diversity is not None and (self.vector is None or self.text is not None):
            raise ValueError("diversity (MMR) needs one query vector and no text")

    def narrowed(self, condition: models.Condition, **changes: Any) -> SearchRequest:
        """A copy that also requires ``condition``, with ``changes`` (other fields) applied."""
        base = self.filter or models.Filter()
        narrowed = base.model_copy(update={"must": [*_as_list(base.must), condition]})
        return replace(self, filter=narrowed, **changes)

    def combined_filter(self, extra: Sequence[models.Condition] = ()) -> models.Filter | None:
        """The request filter with ``extra`` conditions and the excluded ids merged in (no nesting)."""
        base = self.filter or models.Filter()
        must = [*_as_list(base.must), *extra]
        must_not = [*_as_list(base.must_not)]
        if self.exclude_ids:
            must_not.append(models.HasIdCondition(has_id=list(self.exclude_ids)))
        merged = models.Filter(
            must=must or None, should=base.should, must_not=must_not or None, min_should=base.min_should
        )
        return None if merged == models.Filter() else merged


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


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

    def create_collection(
        self, name: str, dim: int, fields: Mapping[str, str] | None = None, *, semantic: bool = False
    ) -> None:
        """Create an empty collection of ``dim``-dimensional cosine vectors.

        Also a sparse ``captions`` vector (IDF), with ``semantic`` a dense ``SEMANTIC_VECTOR``
        (cosine), and a payload index on ``class`` and per field (column -> keyword|integer|float|text).
        """
        ...

    def delete_collection(self, name: str) -> None:
        """Delete a collection and its points."""
        ...

    def upsert(self, collection: str, points: Points, batch_size: int) -> None:
        """Write ``points`` in batches of ``batch_size``."""
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

    def search(self, collection: str, request: SearchRequest) -> list[Hit]:
        """The hits of one request, best first."""
        ...

    def search_batch(self, collection: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """The hits of several requests in one engine call, one list per request."""
        ...

    def best_per_group(self, collection: str, request: SearchRequest, key: str) -> list[Hit]:
        """The best hit of each value of the keyword ``key``, best group first, at most ``request.limit``."""
        ...

    def facet(self, collection: str, key: str, limit: int, flt: models.Filter | None) -> list[tuple[Any, int]]:
        """(value, count) of the keyword ``key`` among the points matching ``flt``, most frequent first."""
        ...

    def scroll(self, collection: str, limit: int, *, offset: int = 0, flt: models.Filter | None = None) -> list[Record]:
        """``limit`` points with their payloads (no vectors) in id order, after skipping ``offset``.

        Only the points matching ``flt`` count; the order is the engine's id order, so the pages of an
        unchanged collection are stable and cover it exactly once.
        """
        ...

    def close(self) -> None:
        """Release the engine's resources (open shards, client connections)."""
        ...
