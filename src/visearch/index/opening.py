"""Opening the index: the backend the settings choose, behind a :class:`~visearch.index.facade.VectorIndex`.

With no ``QDRANT_URL``, the embedded Rust engine qdrant-edge (one shard folder per version, the
alias a pointer file, see :mod:`visearch.index.edge`); with one, a Qdrant server through
qdrant-client (``:memory:`` for throwaway in-process indexes). Each backend module is imported
only when chosen: a service on the embedded engine never loads the server client's code paths.
"""

from __future__ import annotations

import logging

from visearch.errors import EngineNotConfiguredError
from visearch.index.facade import VectorIndex
from visearch.settings import Settings

logger = logging.getLogger(__name__)


def open_index(settings: Settings) -> VectorIndex:
    """The index the settings name: a Qdrant server (or ``:memory:``) if configured, else embedded."""
    if settings.qdrant_location:
        from visearch.index.qdrant import PROBE_TIMEOUT_SECONDS, QdrantBackend, make_client

        shards, replicas = settings.qdrant_shard_number, settings.qdrant_replication_factor
        if settings.qdrant_location == ":memory:":  # searches exactly, warns about search params
            return VectorIndex(QdrantBackend(make_client(settings), shard_number=shards, replication_factor=replicas))
        probe = make_client(settings, timeout=PROBE_TIMEOUT_SECONDS)
        return VectorIndex(
            QdrantBackend(
                make_client(settings),
                hnsw_ef=settings.qdrant_hnsw_ef,
                retries=settings.engine_retries,
                probe=probe,
                shard_number=shards,
                replication_factor=replicas,
            )
        )
    if settings.require_engines:
        raise EngineNotConfiguredError("QDRANT_URL")
    from visearch.index.edge import EdgeBackend

    backend = EdgeBackend(
        settings.index_path,
        hnsw_ef=settings.qdrant_hnsw_ef,
        warm=settings.qdrant_warm_on_open,
        search_threads=settings.qdrant_search_threads,
    )
    if (settings.home / "qdrant").is_dir() and not backend.collections():
        # Homes of visearch before the embedded engine changed hold qdrant-client local-mode data.
        logger.warning(
            "%s holds an index of an older visearch; re-run the pipeline to rebuild it under %s",
            settings.home / "qdrant",
            settings.index_path,
        )
    return VectorIndex(backend)
