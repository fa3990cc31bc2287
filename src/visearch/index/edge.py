"""The embedded index backend: qdrant-edge (Qdrant's Rust engine in-process), one shard per version.

Layout under ``<home>/index``::

    collections/<category>__<version>/   one edge shard per collection version
    collections/<...>.lock               held by the one process writing that version
    aliases/<category>                   the live collection's name (the alias)

Why this shape: an edge shard, like Qdrant's local mode, admits one writer, but a finished shard
created without a write-ahead log opens in any number of processes at once. So the pipeline
writes a new version in its own folder while the service keeps answering from the live one,
and the alias is a small file replaced atomically (``os.replace``); readers resolve it on every
request, so they follow a swap or rollback made by another process without a restart.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import qdrant_edge as edge

from visearch.errors import IndexBusyError, NotFoundError, VisearchError
from visearch.index.types import EF_CONSTRUCT, HNSW_M, Hit, Record

VECTOR = ""  # the one unnamed dense vector of a collection
CONFIG_FILE = "edge_config.json"


class EdgeBackend:
    """Collections as edge shards in folders, aliases as pointer files."""

    def __init__(
        self, root: Path, *, hnsw_ef: int | None = None, hnsw_m: int = HNSW_M, ef_construct: int = EF_CONSTRUCT
    ) -> None:
        self.root = root
        self.shards_dir = root / "collections"
        self.aliases_dir = root / "aliases"
        for folder in (self.shards_dir, self.aliases_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.search_params = edge.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self.hnsw = edge.HnswIndexConfig(m=hnsw_m, ef_construct=ef_construct, full_scan_threshold=10_000)
        self._shards: dict[str, edge.EdgeShard] = {}
        self._locks: dict[str, IO[bytes]] = {}
        # One shard object is shared by the server's threads; open/close must not interleave.
        self._guard = threading.RLock()

    # --- collections and aliases ----------------------------------------------------------
    def _folder(self, name: str) -> Path:
        if not _plain(name):
            raise NotFoundError(f"invalid collection name {name!r}")
        return self.shards_dir / name

    def collections(self) -> list[str]:
        """Names of the folders that hold a shard, sorted."""
        return sorted(p.name for p in self.shards_dir.iterdir() if (p / CONFIG_FILE).is_file())

    def ping(self) -> None:
        """The index folder can be listed (nothing to reach: the engine runs in this process)."""
        self.collections()

    def _alias_file(self, name: str) -> Path:
        # The name comes from requests: "" would be the folder itself, "../x" a file outside it.
        if not _plain(name):
            raise NotFoundError(f"invalid category name {name!r}")
        return self.aliases_dir / name

    def alias(self, name: str) -> str | None:
        """The collection named in the alias file, or None without one."""
        try:
            target = self._alias_file(name).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return target or None

    def set_alias(self, name: str, collection: str) -> None:
        """Write the pointer to a temporary file, flush it to disk, then rename it over the old one."""
        target = self._alias_file(name)
        if not (self._folder(collection) / CONFIG_FILE).is_file():
            raise NotFoundError(f"no collection {collection!r}")
        temporary = self.aliases_dir / f".{name}.{os.getpid()}.{threading.get_ident()}"
        with open(temporary, "w", encoding="utf-8") as pointer:
            pointer.write(collection)
            pointer.flush()
            os.fsync(pointer.fileno())
        os.replace(temporary, target)

    def create_collection(self, name: str, dim: int) -> None:
        """Create an empty shard (no write-ahead log) with a ``class`` index, holding its writer lock."""
        with self._guard:
            self._lock_for_writing(name)
            # No write-ahead log: a finished shard can then be opened by many processes at once.
            # Writes stay durable because every upsert batch is flushed before the next one.
            config = edge.EdgeConfig(
                vectors={VECTOR: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine)},
                hnsw_config=self.hnsw,
                wal_enabled=False,
            )
            shard = edge.EdgeShard.create(str(self._folder(name)), config)
            shard.update(edge.UpdateOperation.create_field_index("class", edge.PayloadSchemaType.Keyword))
            shard.flush()
            self._shards[name] = shard

    def delete_collection(self, name: str) -> None:
        """Close the shard, then delete its folder and its lock file."""
        with self._guard:
            self._forget(name)
            shutil.rmtree(self._folder(name), ignore_errors=True)
            self._lock_path(name).unlink(missing_ok=True)

    # --- writes ---------------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        batch_size: int,
    ) -> None:
        """Write points in batches of ``batch_size``, each flushed to disk before the next."""
        with self._guard:
            shard = self._writer(collection)
            for lo in range(0, len(ids), batch_size):
                points = [
                    edge.Point(id=pid, vector={VECTOR: vector.tolist()}, payload=payload)
                    for pid, vector, payload in zip(
                        ids[lo : lo + batch_size],
                        vectors[lo : lo + batch_size],
                        payloads[lo : lo + batch_size],
                        strict=True,
                    )
                ]
                shard.update(edge.UpdateOperation.upsert_points(points))
                shard.flush()

    def seal(self, collection: str) -> None:
        """Build the HNSW index, flush, and give the version up for reading by any process."""
        with self._guard:
            shard = self._writer(collection)
            shard.optimize()
            shard.flush()
            self._forget(collection)

    def is_being_written(self, collection: str) -> bool:
        """Whether a process (this one included) holds the version's writer lock."""
        if collection in self._locks:
            return True
        try:
            with open(self._lock_path(collection), "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
        return False

    # --- reads ----------------------------------------------------------------------------
    def count(self, collection: str) -> int:
        """Exact number of points in the shard."""
        return int(self._reader(collection).count(edge.CountRequest(exact=True)))

    def retrieve(self, collection: str, ids: Sequence[str], *, with_payload: bool, with_vector: bool) -> list[Record]:
        """The points with these ids that exist, with payload and vector as asked."""
        records = self._reader(collection).retrieve(list(ids), with_payload=with_payload, with_vector=with_vector)
        return [Record(str(r.id), dict(r.payload or {}), _vector(r.vector) if with_vector else None) for r in records]

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        k: int,
        min_score: float | None,
        class_filter: str | None,
        exclude_id: str | None,
    ) -> list[Hit]:
        """The ``k`` nearest points, best first, above ``min_score``, filtered by class and excluded id."""
        must: list[Any] | None = (
            [edge.FieldCondition(key="class", match=edge.MatchValue(class_filter))] if class_filter else None
        )
        must_not: list[Any] | None = [edge.HasIdCondition({exclude_id})] if exclude_id else None
        request = edge.QueryRequest(
            query=edge.Query.Nearest(list(map(float, vector)), using=VECTOR),
            limit=k,
            with_payload=True,
            score_threshold=min_score,
            params=self.search_params,
            filter=edge.Filter(must=must, must_not=must_not) if must or must_not else None,
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self._reader(collection).query(request)]

    def scroll(self, collection: str, limit: int) -> list[Record]:
        """The first ``limit`` points with their payloads (no vectors)."""
        records, _ = self._reader(collection).scroll(edge.ScrollRequest(limit=limit, with_payload=True))
        return [Record(str(r.id), dict(r.payload or {}), None) for r in records]

    def close(self) -> None:
        """Close every open shard and release the writer locks this process holds."""
        with self._guard:
            for name in list(self._shards):
                self._forget(name)

    # --- shard handles --------------------------------------------------------------------
    def _reader(self, name: str) -> edge.EdgeShard:
        with self._guard:
            if name not in self._shards:
                folder = self._folder(name)
                if not (folder / CONFIG_FILE).is_file():
                    raise NotFoundError(f"no collection {name!r}")
                self._close_deleted()
                self._shards[name] = _load(folder)
            return self._shards[name]

    def _writer(self, name: str) -> edge.EdgeShard:
        if name not in self._locks:
            self._forget(name)  # a handle opened for reading may predate our writes
            self._lock_for_writing(name)
            self._shards[name] = _load(self._folder(name))
        return self._shards[name]

    def _lock_path(self, name: str) -> Path:
        return self.shards_dir / f"{name}.lock"

    def _lock_for_writing(self, name: str) -> None:
        if name in self._locks:
            return
        handle = open(self._lock_path(name), "ab")  # noqa: SIM115 - held until seal/close
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise IndexBusyError(f"index version {name} is being written by another process") from exc
        self._locks[name] = handle

    def _forget(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        lock = self._locks.pop(name, None)
        if lock is not None:
            lock.close()

    def _close_deleted(self) -> None:
        """Let go of versions another process has deleted (the pipeline keeps only the newest few)."""
        for name in [n for n in self._shards if not self._folder(n).is_dir()]:
            self._forget(name)


def _plain(name: str) -> bool:
    """A name that stays one file inside its folder (no separators, not hidden, not empty)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and "\0" not in name


def _load(folder: Path) -> edge.EdgeShard:
    try:
        return edge.EdgeShard.load(str(folder))
    except Exception as exc:  # qdrant-edge raises plain Exception with the engine's message
        raise VisearchError(f"cannot open index version {folder.name}: {exc}") from exc


def _vector(vector: Any) -> list[float] | None:
    values = vector.get(VECTOR) if isinstance(vector, dict) else vector
    return [float(v) for v in values] if isinstance(values, list) else None
