"""The index backend over qdrant-client: a Qdrant server (remote mode) or ``:memory:``.

A server keeps collections and aliases itself; this module only translates the few primitives
:class:`visearch.index.VectorIndex` needs into qdrant-client calls.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from visearch.errors import ConfigError, EngineUnavailableError
from visearch.index.types import (
    EF_CONSTRUCT,
    HNSW_M,
    HYBRID_CANDIDATES,
    MMR_CANDIDATES,
    RRF_K,
    SEMANTIC_DIM,
    SEMANTIC_MIN_SCORE,
    SEMANTIC_VECTOR,
    TEXT_VECTOR,
    Durable,
    Hit,
    Points,
    Record,
    SearchRequest,
    Sparse,
)
from visearch.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")
# A health probe must say "down" fast (the service's readiness check allows 3 s for all engines).
PROBE_TIMEOUT_SECONDS = 2
SCHEMAS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "text": models.PayloadSchemaType.TEXT,
}


def make_client(settings: Settings, *, timeout: int | None = None) -> QdrantClient:
    """A client for the configured server, or an in-process ``:memory:`` index.

    ``QDRANT_URL`` (or seed ``QDRANT_HOST``/``QDRANT_PORT``) → a server: TLS when the URL says
    ``https://``, ``QDRANT_API_KEY`` sent as the ``api-key`` header. ``QDRANT_URL=:memory:`` → a
    throwaway index in this process (tests, experiments). Every request is bounded by
    ENGINE_READ_TIMEOUT (qdrant-client takes one timeout, in whole seconds, for connecting and
    reading; ``timeout`` replaces it, e.g. for a health probe); qdrant-client retries nothing but
    upload batches (see ``QdrantBackend``).
    """
    location = settings.qdrant_location
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if not location:
        raise ConfigError("no Qdrant server configured (QDRANT_URL); the embedded index needs no client")
    if not location.startswith(("http://", "https://")):
        # Without a scheme qdrant-client guesses TLS from the API key; make the choice explicit.
        raise ConfigError(f"QDRANT_URL must start with http:// or https://, got {location!r}")
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    if timeout is not None:  # a probe: the main client already checks the server's version
        return QdrantClient(url=location, api_key=api_key, timeout=timeout, check_compatibility=False)
    return QdrantClient(url=location, api_key=api_key, timeout=math.ceil(settings.engine_read_timeout))


def engine_call(method: Callable[P, R]) -> Callable[P, R]:
    """Turn "the server did not answer" (timeout, refused, 5xx) into EngineUnavailableError naming Qdrant.

    Other answers of the server (a 4xx: e.g. a collection that does not exist) pass unchanged.
    """

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ResponseHandlingException as exc:
            reason = exc.source
            raise EngineUnavailableError(
                f"index unreachable (Qdrant server): {type(reason).__name__}: {reason}"
            ) from exc
        except UnexpectedResponse as exc:
            if exc.status_code is not None and exc.status_code < 500:
                raise
            raise EngineUnavailableError(
                f"index unavailable (Qdrant server answered {exc.status_code} {exc.reason_phrase})"
            ) from exc

    return call


class QdrantBackend:
    """Collections and aliases of a Qdrant server (or ``:memory:``) through qdrant-client."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        hnsw_ef: int | None = None,
        retries: int = 1,
        probe: QdrantClient | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        self.client = client
        # New collections only (Settings.qdrant_shard_number / qdrant_replication_factor); None = the server's default.
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.probe = probe or client  # ping() uses it: a client with a short timeout
        self.search_params = models.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self.retries = retries  # of an upload batch (qdrant-client's own default is 3)

    @engine_call
    def collections(self) -> list[str]:
        """Names of the server's collections."""
        return [c.name for c in self.client.get_collections().collections]

    @engine_call
    def ping(self) -> None:
        """One cheap call through the probe client; EngineUnavailableError if the server does not answer."""
        self.probe.get_collections()

    @engine_call
    def alias(self, name: str) -> str | None:
        """The collection the alias points at, or None if the server has no such alias."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == name:
                return alias.collection_name
        return None

    @engine_call
    def set_alias(self, name: str, collection: str) -> None:
        """Repoint (or create) the alias in one atomic server operation."""
        operations: list[models.AliasOperations] = []
        if self.alias(name):
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name)))
        operations.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=name))
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    @engine_call
    def create_collection(
        self, name: str, dim: int, fields: Mapping[str, str] | None = None, *, semantic: bool = False
    ) -> None:
        """Create a cosine collection with the shared HNSW settings, a sparse vector and payload indexes.

        The sparse ``captions`` vector gets the IDF modifier; with ``semantic`` the dense caption
        meaning is a second named vector beside the unnamed image one. ``class`` and every entry of
        ``fields`` (column -> kind) get a payload index. Spread over ``shard_number`` shards with
        ``replication_factor`` copies each, where set.
        """
        image = models.VectorParams(size=dim, distance=models.Distance.COSINE)
        meaning = models.VectorParams(
            size=SEMANTIC_DIM,
            distance=models.Distance.COSINE,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        )
        self.client.create_collection(
            name,
            # "" is Qdrant's name for the unnamed vector: the image vector keeps it either way.
            vectors_config={"": image, SEMANTIC_VECTOR: meaning} if semantic else image,
            sparse_vectors_config={TEXT_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=EF_CONSTRUCT),
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )
        with warnings.catch_warnings():
            # :memory: says payload indexes have no effect there; a server uses them for filters.
            warnings.simplefilter("ignore", UserWarning)
            for column, kind in {"class": "keyword", **(fields or {})}.items():
                self.client.create_payload_index(name, column, SCHEMAS[kind], wait=True)

    @engine_call
    def delete_collection(self, name: str) -> None:
        """Delete the collection on the server."""
        self.client.delete_collection(name)

    @engine_call
    def upsert(self, collection: str, points: Points, batch_size: int) -> None:
        """Upload points in batches of ``batch_size``, waiting for each; a failed batch is retried."""
        structs: Iterable[models.PointStruct] = (
            models.PointStruct(id=pid, vector=_point_vectors(vector, text, meaning), payload=payload)
            for pid, vector, payload, text, meaning in points.rows()
        )
        self.client.upload_points(collection, structs, batch_size=batch_size, wait=True, max_retries=self.retries)

    def seal(self, collection: str) -> None:
        """Nothing to do: a server indexes in the background and answers meanwhile."""

    def is_being_written(self, collection: str) -> bool:
        """Always False: a server has no writer lock to look at."""
        return False

    @engine_call
    def count(self, collection: str) -> int:
        """Exact number of points in the collection."""
        return int(self.client.count(collection, exact=True).count)

    @engine_call
    def retrieve(self, collection: str, ids: Sequence[str], *, with_payload: bool, with_vector: bool) -> list[Record]:
        """The points with these ids that exist, with payload and vector as asked."""
        records = self.client.retrieve(collection, ids=list(ids), with_payload=with_payload, with_vectors=with_vector)
        return [Record(str(r.id), dict(r.payload or {}), flat_vector(r.vector)) for r in records]

    @engine_call
    def search(self, collection: str, request: SearchRequest) -> list[Hit]:
        """The hits of one request (``query_points``), best first."""
        response = self.client.query_points(collection, **self._arguments(request))
        return _hits(response.points)

    @engine_call
    def search_batch(self, collection: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """The hits of several requests in one ``query_batch_points`` call."""
        if not requests:
            return []
        batch = [models.QueryRequest(**self._arguments(r, batch=True)) for r in requests]
        return [_hits(response.points) for response in self.client.query_batch_points(collection, batch)]

    @engine_call
    def best_per_group(self, collection: str, request: SearchRequest, key: str) -> list[Hit]:
        """The best hit per value of ``key`` (``query_points_groups``, group size 1), best group first."""
        arguments = self._arguments(request)
        arguments.pop("offset", None)
        response = self.client.query_points_groups(collection, group_by=key, group_size=1, **arguments)
        return [_hits(group.hits)[0] for group in response.groups if group.hits]

    @engine_call
    def facet(self, collection: str, key: str, limit: int, flt: models.Filter | None) -> list[tuple[Any, int]]:
        """(value, exact count) of ``key`` among the points matching ``flt``, most frequent first."""
        response = self.client.facet(collection, key, facet_filter=flt, limit=limit, exact=True)
        return [(hit.value, int(hit.count)) for hit in response.hits]

    def _arguments(self, request: SearchRequest, *, batch: bool = False) -> dict[str, Any]:
        flt = request.combined_filter()
        text = models.SparseVector(indices=request.text.indices, values=request.text.values) if request.text else None
        dense = self._dense(request)
        arguments: dict[str, Any] = {"limit": request.limit, "offset": request.offset or None, "with_payload": True}
        arguments["filter" if batch else "query_filter"] = flt
        if text is not None and (dense is not None or request.semantic is not None):
            # Fusion: the image (if any), BM25 and the caption meaning (if asked), ranked by RRF.
            candidates = max(HYBRID_CANDIDATES, request.limit + request.offset)
            prefetch = [models.Prefetch(query=text, using=TEXT_VECTOR, filter=flt, limit=candidates)]
            if dense is not None:
                image = models.Prefetch(
                    query=dense,
                    filter=flt,
                    limit=candidates,
                    score_threshold=request.min_score,
                    params=self.search_params,
                )
                prefetch.insert(0, image)
            if request.semantic is not None:
                meaning = models.Prefetch(
                    query=[list(request.semantic)],  # a one-vector multivector
                    using=SEMANTIC_VECTOR,
                    filter=flt,
                    limit=candidates,
                    score_threshold=SEMANTIC_MIN_SCORE,
                    params=self.search_params,
                )
                prefetch.append(meaning)
            arguments["prefetch"] = prefetch
            arguments["query"] = models.RrfQuery(rrf=models.Rrf(k=RRF_K))
        elif dense is None:
            arguments.update(query=text, using=TEXT_VECTOR)
        else:
            arguments.update(query=dense, score_threshold=request.min_score, params=self.search_params)
        if not batch and "params" in arguments:
            arguments["search_params"] = arguments.pop("params")
        return arguments

    @staticmethod
    def _dense(request: SearchRequest) -> Any:
        if request.positives or request.negatives:
            return models.RecommendQuery(
                recommend=models.RecommendInput(
                    positive=list(request.positives),
                    negative=list(request.negatives),
                    strategy=models.RecommendStrategy.BEST_SCORE,
                )
            )
        if request.vector is None:
            return None
        if request.diversity is not None:
            mmr = models.Mmr(diversity=request.diversity, candidates_limit=MMR_CANDIDATES)
            return models.NearestQuery(nearest=list(request.vector), mmr=mmr)
        return list(request.vector)

    @engine_call
    def scroll(self, collection: str, limit: int, *, offset: int = 0, flt: models.Filter | None = None) -> list[Record]:
        """``limit`` points with payloads in id order, ``offset`` matching ones skipped (see IndexBackend)."""
        # query_points without a query answers in id order and takes a numeric offset (scroll does not).
        response = self.client.query_points(
            collection, limit=limit, offset=offset or None, query_filter=flt, with_payload=True
        )
        return [Record(str(r.id), dict(r.payload or {}), None) for r in response.points]

    def close(self) -> None:
        """Close the client (and the probe client, if it is another one)."""
        self.client.close()
        if self.probe is not self.client:
            self.probe.close()

    # --- catalogue writes (visearch.catalogue): a server applies them natively, visible at once ----
    @engine_call
    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete the points with these ids (ids not stored are ignored), waiting for the server."""
        self.client.delete(collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def acquire(self, collection: str, wait: float = 0.0) -> None:
        """Nothing to do: a server serializes writes itself."""

    def commit(self, collection: str, durable: Durable | None = None) -> None:
        """Nothing to do: every write was applied with ``wait=True``, so it is durable now."""
        if durable is not None:
            durable(True)


def flat_vector(vector: Any) -> list[float] | None:
    """The unnamed dense vector: a flat list, or the ``""`` entry of named vectors; else None."""
    if isinstance(vector, dict):
        vector = vector.get("")
    if isinstance(vector, list) and vector and not isinstance(vector[0], list):
        return [float(v) for v in vector]
    return None


def _point_vectors(vector: np.ndarray, text: Sparse | None, meaning: list[list[float]] | None) -> Any:
    vectors: dict[str, Any] = {"": vector.tolist()}
    if text is not None:
        vectors[TEXT_VECTOR] = models.SparseVector(indices=text.indices, values=text.values)
    if meaning is not None:
        vectors[SEMANTIC_VECTOR] = meaning
    return vectors


def _hits(points: Sequence[models.ScoredPoint]) -> list[Hit]:
    return [Hit(str(point.id), float(point.score), dict(point.payload or {})) for point in points]
