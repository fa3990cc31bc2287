"""Qdrant adapter: versioned collections, uuid5 ids, batched upsert, atomic alias swap, query.

One code path for every client mode: local (embedded, ``path=``), ``:memory:`` and a server.
Collection ``<category>__<version>`` with version ``<UTC time>-<model version>-<data hash>``;
alias ``<category>`` points at the live one. The model version in the name tells the search
path which model produced the vectors, so a rollback brings its model along.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from visearch.errors import ConfigError, IndexBusyError, NotFoundError, VisearchError
from visearch.settings import Settings

POINT_NAMESPACE = uuid.UUID("6f1d7f0e-2b7c-5d53-9a54-1c0a7e1f7a3e")
SEPARATOR = "__"


def make_client(settings: Settings) -> QdrantClient:
    """The one place that knows the client mode; everything else runs the same calls on any client.

    ``QDRANT_URL`` (or seed ``QDRANT_HOST``/``QDRANT_PORT``) → a server: TLS when the URL says
    ``https://``, ``QDRANT_API_KEY`` sent as the ``api-key`` header. ``QDRANT_URL=:memory:`` → an
    in-process throwaway index (tests, experiments). Unset → embedded local mode under the home.
    """
    location = settings.qdrant_location
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        if not location.startswith(("http://", "https://")):
            # Without a scheme qdrant-client guesses TLS from the API key; make the choice explicit.
            raise ConfigError(f"QDRANT_URL must start with http:// or https://, got {location!r}")
        return QdrantClient(url=location, api_key=api_key, timeout=30)
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise IndexBusyError(
                f"the embedded index {settings.qdrant_path} is in use by another process (the running "
                "service?); stop it, or run a Qdrant server and set QDRANT_URL"
            ) from exc
        raise


def point_id(category: str, file: str) -> str:
    """Deterministic id: re-running an upsert overwrites a point instead of duplicating it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{category}/{file}"))


@dataclass(frozen=True)
class CollectionVersion:
    category: str
    created: str
    model_version: str
    data_hash: str

    @property
    def name(self) -> str:
        return f"{self.category}{SEPARATOR}{self.created}-{self.model_version}-{self.data_hash}"

    @classmethod
    def parse(cls, name: str) -> CollectionVersion | None:
        category, sep, version = name.partition(SEPARATOR)
        parts = version.split("-")
        if not sep or len(parts) != 3:
            return None
        return cls(category, *parts)


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]

    @property
    def similarity_percent(self) -> float:
        return round(max(0.0, self.score) * 100, 2)


class VectorIndex:
    """All index operations of visearch, over any QdrantClient."""

    def __init__(self, client: QdrantClient) -> None:
        self.client = client

    # --- versions and aliases -------------------------------------------------------------
    def versions(self, category: str) -> list[CollectionVersion]:
        """This category's collections, oldest first."""
        found = [CollectionVersion.parse(c.name) for c in self.client.get_collections().collections]
        return sorted((v for v in found if v and v.category == category), key=lambda v: v.created)

    def find_version(self, category: str, model_version: str, data_hash: str) -> CollectionVersion | None:
        for version in self.versions(category):
            if (version.model_version, version.data_hash) == (model_version, data_hash):
                return version
        return None

    def live(self, category: str) -> CollectionVersion | None:
        """The collection the category alias points at, or None before the first swap."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == category:
                return CollectionVersion.parse(alias.collection_name)
        return None

    def require_live(self, category: str) -> CollectionVersion:
        live = self.live(category)
        if live is None:
            raise NotFoundError(f"category {category!r} has no index yet; run the pipeline for it")
        return live

    def create(self, category: str, model_version: str, data_hash: str, dim: int) -> CollectionVersion:
        """Create a new version (or return the unfinished one with the same model and data: resume)."""
        existing = self.find_version(category, model_version, data_hash)
        if existing:
            return existing
        # Microseconds: versions created within one second still sort in creation order.
        created = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        version = CollectionVersion(category, created, model_version, data_hash)
        self.client.create_collection(
            version.name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )
        with warnings.catch_warnings():
            # Local mode says payload indexes have no effect there; a server uses them for filters.
            warnings.simplefilter("ignore", UserWarning)
            self.client.create_payload_index(version.name, "class", models.PayloadSchemaType.KEYWORD, wait=True)
        return version

    def swap_alias(self, category: str, collection: str) -> None:
        """Point the alias at ``collection`` in one atomic operation."""
        operations: list[models.AliasOperations] = []
        if self.live(category):
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=category)))
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=category)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def rollback(self, category: str) -> CollectionVersion:
        """Point the alias at the version before the live one."""
        live = self.require_live(category)
        older = [v for v in self.versions(category) if v.created < live.created]
        if not older:
            raise NotFoundError(f"category {category!r} has no older index version to roll back to")
        self.swap_alias(category, older[-1].name)
        return older[-1]

    def drop_old(self, category: str, keep: int) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the live one)."""
        live = self.live(category)
        versions = self.versions(category)
        dropped = []
        for version in versions[: max(0, len(versions) - keep)]:
            if live is None or version.name != live.name:
                self.client.delete_collection(version.name)
                dropped.append(version.name)
        return dropped

    # --- writes --------------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        *,
        batch_size: int = 256,
    ) -> None:
        """Batched upload (qdrant-client's batching), waiting for each batch to be applied."""
        if not (len(ids) == len(vectors) == len(payloads)):
            raise VisearchError("ids, vectors and payloads differ in length")
        points: Iterable[models.PointStruct] = (
            models.PointStruct(id=pid, vector=vector.tolist(), payload=payload)
            for pid, vector, payload in zip(ids, vectors, payloads, strict=True)
        )
        self.client.upload_points(collection, points, batch_size=batch_size, wait=True)

    def count(self, collection: str) -> int:
        return int(self.client.count(collection, exact=True).count)

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already stored (lets an interrupted upsert skip finished work)."""
        found: set[str] = set()
        for lo in range(0, len(ids), 1024):
            records = self.client.retrieve(collection, ids=list(ids[lo : lo + 1024]), with_payload=False)
            found.update(str(record.id) for record in records)
        return found

    # --- reads ---------------------------------------------------------------------------
    def query(
        self,
        category: str,
        vector: Sequence[float],
        *,
        k: int,
        min_score: float | None = None,
        class_filter: str | None = None,
        exclude_id: str | None = None,
    ) -> list[Hit]:
        must: list[models.Condition] = []
        if class_filter:
            must.append(models.FieldCondition(key="class", match=models.MatchValue(value=class_filter)))
        must_not: list[models.Condition] = [models.HasIdCondition(has_id=[exclude_id])] if exclude_id else []
        response = self.client.query_points(
            category, query=list(map(float, vector)), limit=k, score_threshold=min_score, with_payload=True,
            query_filter=models.Filter(must=must, must_not=must_not) if must or must_not else None,
        )  # fmt: skip
        return [Hit(str(point.id), float(point.score), dict(point.payload or {})) for point in response.points]

    def get(self, category: str, pid: str, *, with_vector: bool = False) -> tuple[dict[str, Any], list[float] | None]:
        """Payload (and vector) of one point of the live collection."""
        try:
            uuid.UUID(pid)
        except ValueError as exc:
            raise NotFoundError(f"invalid point id {pid!r} (expected a UUID)") from exc
        records = self.client.retrieve(category, ids=[pid], with_payload=True, with_vectors=with_vector)
        if not records:
            raise NotFoundError(f"no image with id {pid} in category {category!r}")
        vector = records[0].vector if with_vector else None
        # Unnamed single vectors come back as a flat list of floats.
        flat = [float(v) for v in vector] if isinstance(vector, list) and not isinstance(vector[0], list) else None
        return dict(records[0].payload or {}), flat

    def sample(self, category: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The first ``limit`` points (id, payload) of the live collection, in id order."""
        records, _ = self.client.scroll(category, limit=limit, with_payload=True)
        return [(str(r.id), dict(r.payload or {})) for r in records]
