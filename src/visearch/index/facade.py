"""The index façade: every index operation of visearch, over any backend.

:class:`VectorIndex` turns versions and aliases, batched writes and one-collection reads into the
primitives of :class:`visearch.index.types.IndexBackend` (one implementation per engine), so the
rest of the library never names an engine. Open one with :func:`visearch.index.open_index`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from visearch.errors import ConflictError, NotFoundError, VisearchError
from visearch.index.semantic import caption_parts, document_vectors
from visearch.index.text import caption_text, document_vector
from visearch.index.types import UPSERT_BATCH, Hit, IndexBackend, Points, Record, SearchRequest, Sparse
from visearch.index.versions import CollectionVersion, is_uuid, meaning_columns

RETRIEVE_BATCH = 1024  # ids per retrieve call: bounds one request's size on a server
# Points whose caption vectors are computed and written in one backend call: the semantic
# vectors of all 70,000 Fashion-MNIST points at once held 5 GB (Python lists of floats).
UPSERT_CHUNK = 8192


class VectorIndex:
    """All index operations of visearch, over any backend."""

    def __init__(self, backend: IndexBackend) -> None:
        self.backend = backend

    # --- versions and aliases -------------------------------------------------------------
    def versions(self, category: str) -> list[CollectionVersion]:
        """This category's collections, oldest first."""
        found = [CollectionVersion.parse(name) for name in self.backend.collections()]
        return sorted((v for v in found if v and v.category == category), key=lambda v: v.created)

    def find_version(
        self, category: str, model_version: str, data_hash: str, schema: str = ""
    ) -> CollectionVersion | None:
        """The category's version built from this model and data with this schema (``schema_hash``), if there is one."""
        for version in self.versions(category):
            if (version.model_version, version.data_hash, version.schema) == (model_version, data_hash, schema):
                return version
        return None

    def live(self, category: str) -> CollectionVersion | None:
        """The collection the category alias points at, or None before the first swap."""
        target = self.backend.alias(category)
        return CollectionVersion.parse(target) if target else None

    def require_live(self, category: str) -> CollectionVersion:
        """The version the category alias points at.

        Raises:
            NotFoundError: the category has no index yet.
        """
        live = self.live(category)
        if live is None:
            raise NotFoundError(f"category {category!r} has no index yet; run the pipeline for it")
        return live

    def create(
        self,
        category: str,
        model_version: str,
        data_hash: str,
        dim: int,
        fields: Mapping[str, str] | None = None,
        schema: str = "",
        *,
        semantic: bool = False,
    ) -> CollectionVersion:
        """Create a new version (or return the one with the same model, data and schema: reuse or resume).

        ``fields`` (column -> keyword|integer|float|text) get payload indexes besides ``class``;
        ``schema`` (``versions.schema_hash`` of the fields, captions and caption model) is part of
        the version's identity; ``semantic``: the version stores semantic caption vectors.
        """
        existing = self.find_version(category, model_version, data_hash, schema)
        if existing:
            return existing
        version = CollectionVersion.new(category, model_version, data_hash, schema)
        self.backend.create_collection(version.name, dim, fields, semantic=semantic)
        return version

    def swap_alias(self, category: str, collection: str) -> None:
        """Point the alias at ``collection`` in one atomic operation."""
        self.backend.set_alias(category, collection)

    def rollback_target(self, category: str, to: str | None = None) -> CollectionVersion:
        """The version a rollback would make live: ``to`` (a kept, finished version), else the one before the live one."""
        live = self.require_live(category)
        if to:
            found = next((v for v in self.versions(category) if v.name == to), None)
            if found is None:
                kept = ", ".join(v.name for v in self.versions(category))
                raise NotFoundError(f"category {category!r} has no index version {to!r}; kept: {kept}")
            if self.is_being_written(found.name):
                raise ConflictError(f"{found.name} is still being written; it cannot go live")
            return found
        older = [v for v in self.versions(category) if v.created < live.created]
        if not older:
            raise NotFoundError(f"category {category!r} has no older index version to roll back to")
        return older[-1]

    def rollback(self, category: str, to: str | None = None) -> CollectionVersion:
        """Point the alias at ``to`` (default: the version before the live one); returns it."""
        target = self.rollback_target(category, to)
        self.swap_alias(category, target.name)
        return target

    def drop_old(self, category: str, keep: int) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the live one, never one being written)."""
        live = self.live(category)
        versions = self.versions(category)
        dropped = []
        for version in versions[: max(0, len(versions) - keep)]:
            if (live is None or version.name != live.name) and not self.is_being_written(version.name):
                self.backend.delete_collection(version.name)
                dropped.append(version.name)
        return dropped

    def delete(self, collection: str) -> None:
        """Delete one collection, without the checks of :meth:`drop_old`."""
        self.backend.delete_collection(collection)

    # --- writes --------------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        *,
        batch_size: int = UPSERT_BATCH,
        captions: Sequence[str] = (),
        semantic: bool = False,
        meaning: Sequence[str] | None = None,
        progress: bool = False,
    ) -> None:
        """Batched upload, each batch applied and durable before the next.

        ``captions`` name the payload columns whose text becomes the point's BM25 vector (text
        search) and, with ``semantic`` (the collection has them: ``versions.has_semantic``), the
        ``meaning`` columns (None: every caption column) its semantic caption vector. Caption
        vectors are computed a chunk at a time, so memory stays flat whatever the point count;
        ``progress`` shows a bar over the points.
        """
        if not (len(ids) == len(vectors) == len(payloads)):
            raise VisearchError("ids, vectors and payloads differ in length")
        embedded = meaning_columns(captions, meaning) if semantic else []
        with tqdm(total=len(ids), desc=f"indexing {collection}", unit="point", disable=not progress) as bar:
            for lo in range(0, len(ids), UPSERT_CHUNK):
                chunk = payloads[lo : lo + UPSERT_CHUNK]
                texts: list[Sparse | None] | None = None
                meanings: list[list[list[float]] | None] | None = None
                if captions:
                    texts = [document_vector(caption_text(payload, captions)) for payload in chunk]
                if embedded:
                    meanings = document_vectors([caption_parts(payload, embedded) for payload in chunk])
                points = Points(ids[lo : lo + UPSERT_CHUNK], vectors[lo : lo + UPSERT_CHUNK], chunk, texts, meanings)
                self.backend.upsert(collection, points, batch_size)
                bar.update(len(chunk))

    def seal(self, collection: str) -> None:
        """Finish a version before it goes live (the embedded engine builds its HNSW graph here)."""
        self.backend.seal(collection)

    def count(self, collection: str) -> int:
        """Exact number of points in the collection."""
        return self.backend.count(collection)

    def is_being_written(self, collection: str) -> bool:
        """True while a pipeline writes this version (its count is not final yet)."""
        return self.backend.is_being_written(collection)

    def points(self, collection: str) -> int | None:
        """Point count of a finished version; None while a pipeline is still writing it."""
        return None if self.is_being_written(collection) else self.count(collection)

    def status(self, collection: str) -> str:
        """Point count, or that a pipeline is still writing this version."""
        points = self.points(collection)
        return "being written" if points is None else f"{points} points"

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already stored (lets an interrupted upsert skip finished work)."""
        return {record.id for record in self._retrieve(collection, ids, with_vector=False)}

    # --- reads (of one collection: resolve the alias once per request with ``require_live``) ---
    def query(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        k: int,
        min_score: float | None = None,
        class_filter: str | None = None,
        exclude_id: str | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest points of one collection, best first, optionally filtered."""
        from qdrant_client import models

        request = SearchRequest(
            k, vector=list(map(float, vector)), min_score=min_score, exclude_ids=[exclude_id] if exclude_id else []
        )
        if class_filter:
            request = request.narrowed(models.FieldCondition(key="class", match=models.MatchValue(value=class_filter)))
        return self.backend.search(collection, request)

    def search(self, collection: str, request: SearchRequest) -> list[Hit]:
        """The hits of one request (nearest, MMR, recommend, text or hybrid), best first."""
        return self.backend.search(collection, request)

    def search_batch(self, collection: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Several requests in one engine call, one hit list per request."""
        return self.backend.search_batch(collection, requests)

    def best_per_group(self, collection: str, request: SearchRequest, key: str = "class") -> list[Hit]:
        """The best hit of each value of the keyword ``key`` (default: one per class), best first."""
        return self.backend.best_per_group(collection, request, key)

    def facet(self, collection: str, key: str, *, limit: int = 100, flt: Any = None) -> list[tuple[Any, int]]:
        """(value, count) of the keyword column ``key``, most frequent first, among points matching ``flt``."""
        return self.backend.facet(collection, key, limit, flt)

    def records(self, collection: str, ids: Sequence[str]) -> list[Record]:
        """The stored points (payloads, no vectors) of those ``ids`` that exist."""
        return self.backend.retrieve(collection, ids, with_payload=True, with_vector=False)

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored vectors of those ``ids`` that exist, by id (missing ids, and ids that are no UUID, are absent)."""
        valid = [pid for pid in ids if is_uuid(pid)]  # the engines refuse the whole call for one bad id
        records = self._retrieve(collection, valid, with_vector=True)
        return {record.id: record.vector for record in records if record.vector is not None}

    def _retrieve(self, collection: str, ids: Sequence[str], *, with_vector: bool) -> Iterator[Record]:
        """The stored points (no payloads) of those ``ids`` that exist, ``RETRIEVE_BATCH`` ids per engine call."""
        for lo in range(0, len(ids), RETRIEVE_BATCH):
            batch = ids[lo : lo + RETRIEVE_BATCH]
            yield from self.backend.retrieve(collection, batch, with_payload=False, with_vector=with_vector)

    def get(self, collection: str, pid: str, *, with_vector: bool = False) -> tuple[dict[str, Any], list[float] | None]:
        """Payload (and vector) of one point."""
        if not is_uuid(pid):
            raise NotFoundError(f"invalid point id {pid!r} (expected a UUID)")
        records = self.backend.retrieve(collection, [pid], with_payload=True, with_vector=with_vector)
        if not records:
            version = CollectionVersion.parse(collection)
            raise NotFoundError(f"no image with id {pid} in category {version.category if version else collection!r}")
        return records[0].payload, records[0].vector

    def sample(self, collection: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The first ``limit`` points (id, payload), in id order."""
        return [(record.id, record.payload) for record in self.backend.scroll(collection, limit)]

    def page(self, collection: str, offset: int, limit: int, flt: Any = None) -> list[Record]:
        """Points (payloads, no vectors) ``offset`` to ``offset + limit`` of those matching ``flt``, in id order."""
        return self.backend.scroll(collection, limit, offset=offset, flt=flt)

    def close(self) -> None:
        """Release the backend (open shards, client connections)."""
        self.backend.close()
