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
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, cast, overload

import numpy as np
import qdrant_edge as edge
from qdrant_client import models

from visearch.errors import IndexBusyError, NotFoundError, VisearchError
from visearch.index.filters import clauses
from visearch.index.types import (
    EF_CONSTRUCT,
    HNSW_M,
    HYBRID_CANDIDATES,
    MAX_GROUPS,
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

LOG = logging.getLogger(__name__)
VECTOR = ""  # the one unnamed dense vector of a collection
CONFIG_FILE = "edge_config.json"
WARM_CHUNK = 4 << 20  # bytes per read when warming a shard: large sequential reads
# Points written between two flushes. A flush costs ~140 ms whatever it holds (100k points: 49
# flushes took 6.8 of 10 s), so flushing every 2,048-point batch made the upsert flush-bound.
FLUSH_POINTS = 16_384
# A catalogue write waits this long for a version's writer lock (another write, or a reader loading).
LOCK_WAIT_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.02
# A catalogue writer keeps its version open this long after a commit, so a burst of writes (a
# service taking adds, a sync's batches) pays one shard load and one journal fold instead of two
# loads per write (~0.1-0.5 s each on 2 cores, holding the GIL); never longer than HOLD_SECONDS in
# one go, so other processes' writes and reloads wait at most that long (docs/catalogue-design.md,
# "Speed"). 1 s spanned a sync's gap between batches at 70,000 rows, but doubled every hand-over
# between two service workers that both take adds (each waits out the other's linger).
LINGER_SECONDS = 0.5
HOLD_SECONDS = 2.0
# ...unless no other process asked for the version (``_ask_for``: a reader with an outdated handle,
# a reader or writer waiting for the lock): then a writer under steady adds holds it this long,
# flushing every HOLD_SECONDS. Letting go folds the journals, a close and a load that hold the GIL
# 0.1-0.3 s; every 2 s under 10 adds/s they stalled the service's queries: p99 at 8 clients 2.1-5.7x
# the same load without adds, 1.0-1.2x with no fold in the run (benchmarks/results/load.md).
ALONE_HOLD_SECONDS = 30.0
ASK_EVERY_SECONDS = 0.2  # a process waiting for a version touches its want file at most this often
ASK_CLOCK_SLACK = 0.05
SCHEMAS = {
    "keyword": edge.PayloadSchemaType.Keyword,
    "integer": edge.PayloadSchemaType.Integer,
    "float": edge.PayloadSchemaType.Float,
}


class EdgeBackend:
    """Collections as edge shards in folders, aliases as pointer files."""

    def __init__(
        self,
        root: Path,
        *,
        hnsw_ef: int | None = None,
        hnsw_m: int = HNSW_M,
        ef_construct: int = EF_CONSTRUCT,
        warm: bool = False,
        linger: float = LINGER_SECONDS,
        search_threads: int | None = None,
    ) -> None:
        """``warm``: read a version's files once when this process opens it for reading (``_warm``).

        ``search_threads``: the search pool of each version this backend creates (None: the engine's
        default, from the CPUs); stored in the version, so every process that opens it uses it.

        ``linger``: seconds a catalogue writer stays open after its last commit (0: close at once).
        """
        self.root = root
        self.warm = warm
        self.shards_dir = root / "collections"
        self.aliases_dir = root / "aliases"
        for folder in (self.shards_dir, self.aliases_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.search_params = edge.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self.hnsw = edge.HnswIndexConfig(m=hnsw_m, ef_construct=ef_construct, full_scan_threshold=10_000)
        self.search_threads = search_threads
        self._shards: dict[str, edge.EdgeShard] = {}
        self._locks: dict[str, IO[bytes]] = {}
        self._generations: dict[str, int] = {}  # of the handles open for reading (see ``generation``)
        self.linger = linger
        self._sessions: dict[str, float] = {}  # catalogue writers held open (acquire): since when
        self._active: set[str] = set()  # between acquire and commit: an idle release must wait
        self._timers: dict[str, threading.Timer] = {}
        self._idle_at: dict[str, float] = {}  # a lingering writer lets go at this time (monotonic)
        self._flushed_at: dict[str, float] = {}  # a lingering writer's last flush (monotonic)
        self._asked_at: dict[str, float] = {}  # when this process last asked for a version (``_ask_for``)
        # Told once a lingering writer's writes are flushed (True) or lost with its handle (False).
        self._unflushed: dict[str, list[Durable]] = {}
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

    def create_collection(
        self, name: str, dim: int, fields: Mapping[str, str] | None = None, *, semantic: bool = False
    ) -> None:
        """Create an empty shard (no write-ahead log) with payload indexes, holding its writer lock.

        Indexes: ``class`` (keyword) and one per entry of ``fields`` (column -> kind); vectors: the
        dense one, the sparse ``captions`` one (BM25, IDF applied by the engine) and, with
        ``semantic``, the dense caption-meaning one.
        """
        with self._guard:
            self._lock_for_writing(name)
            # No write-ahead log: a finished shard can then be opened by many processes at once.
            # Writes stay durable because every upsert batch is flushed before the next one.
            vectors = {VECTOR: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine)}
            if semantic:
                vectors[SEMANTIC_VECTOR] = edge.EdgeVectorParams(
                    size=SEMANTIC_DIM,
                    distance=edge.Distance.Cosine,
                    multivector_config=edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim),
                )
            config = edge.EdgeConfig(
                vectors=vectors,
                sparse_vectors={TEXT_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
                hnsw_config=self.hnsw,
                # Payloads (a few short columns per point) kept in RAM once read: the engine's default,
                # Cold, re-read them from disk for every hit, and a reopened shard answered 3-4x slower
                # until each page had been read again (benchmarks/results/index-realistic.md).
                payload_memory=edge.Memory.Cached,
                wal_enabled=False,
                max_search_threads=self.search_threads,
            )
            shard = edge.EdgeShard.create(str(self._folder(name)), config)
            for column, kind in {"class": "keyword", **(fields or {})}.items():
                schema = edge.TextIndexParams() if kind == "text" else SCHEMAS[kind]
                shard.update(edge.UpdateOperation.create_field_index(column, schema))
            shard.flush()
            self._shards[name] = shard

    def delete_collection(self, name: str) -> None:
        """Close the shard, then delete its folder and its lock file."""
        with self._guard:
            self._forget(name)
            shutil.rmtree(self._folder(name), ignore_errors=True)
            self._lock_path(name).unlink(missing_ok=True)
            self._want_path(name).unlink(missing_ok=True)

    # --- writes ---------------------------------------------------------------------------
    def upsert(self, collection: str, points: Points, batch_size: int) -> None:
        """Write points in batches of ``batch_size``; flushed to disk every ``FLUSH_POINTS`` and at the end.

        Without a write-ahead log, a batch is durable once flushed: a writer killed in between
        loses at most the last ``FLUSH_POINTS`` points, which the re-run writes again (ids are stable).
        """
        with self._guard:
            shard = self._writer(collection)
            unflushed = 0
            for lo in range(0, len(points), batch_size):
                batch = [
                    edge.Point(id=pid, vector=_point_vectors(vector, text, meaning), payload=payload)
                    for pid, vector, payload, text, meaning in points[lo : lo + batch_size].rows()
                ]
                shard.update(edge.UpdateOperation.upsert_points(batch))
                unflushed += len(batch)
                if unflushed >= FLUSH_POINTS:
                    shard.flush()
                    unflushed = 0
            if unflushed and collection not in self._sessions:  # a catalogue commit flushes it
                shard.flush()

    def seal(self, collection: str) -> None:
        """Build the HNSW index, flush, and give the version up for reading by any process."""
        with self._guard:
            shard = self._writer(collection)
            shard.optimize()
            shard.flush()
            self._forget(collection)

    def is_being_written(self, collection: str) -> bool:
        """Whether a process holds the version's writer lock (this one: outside a catalogue write).

        A catalogue writer of this process that lingers (``commit``) left its version complete.
        """
        if collection in self._locks:
            return collection not in self._sessions
        return self._lock_refused(collection, fcntl.LOCK_EX)

    # --- reads ----------------------------------------------------------------------------
    def count(self, collection: str) -> int:
        """Exact number of points in the shard."""
        return int(self._reader(collection).count(edge.CountRequest(exact=True)))

    def retrieve(self, collection: str, ids: Sequence[str], *, with_payload: bool, with_vector: bool) -> list[Record]:
        """The points with these ids that exist, with payload and vector as asked."""
        records = self._reader(collection).retrieve(list(ids), with_payload=with_payload, with_vector=with_vector)
        return [Record(str(r.id), dict(r.payload or {}), _vector(r.vector) if with_vector else None) for r in records]

    def search(self, collection: str, request: SearchRequest) -> list[Hit]:
        """The hits of one request, best first."""
        return _hits(self._reader(collection).query(self._request(request)))

    def search_batch(self, collection: str, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """The hits of several requests in one ``query_batch`` call."""
        if not requests:
            return []
        batch = edge.QueryBatchRequest([self._request(r) for r in requests])
        return [_hits(points) for points in self._reader(collection).query_batch(batch)]

    def best_per_group(self, collection: str, request: SearchRequest, key: str) -> list[Hit]:
        """Facet the matching points on ``key``, then one batch of per-value queries with limit 1."""
        values = [value for value, _ in self.facet(collection, key, MAX_GROUPS, request.combined_filter())]
        per_value = [
            request.narrowed(models.FieldCondition(key=key, match=models.MatchValue(value=value)), limit=1, offset=0)
            for value in values
        ]
        best = [hits[0] for hits in self.search_batch(collection, per_value) if hits]
        # The groups in the order of their best hit, as Qdrant's query_points_groups returns them.
        return sorted(best, key=lambda hit: hit.score, reverse=True)[: request.limit]

    def facet(self, collection: str, key: str, limit: int, flt: models.Filter | None) -> list[tuple[Any, int]]:
        """(value, exact count) of ``key`` among the points matching ``flt``, most frequent first."""
        request = edge.FacetRequest(key, limit=limit, exact=True, filter=edge_filter(flt) if flt else None)
        return [(hit.value, int(hit.count)) for hit in self._reader(collection).facet(request).hits]

    def _request(self, request: SearchRequest) -> edge.QueryRequest:
        flt = request.combined_filter()
        translated = edge_filter(flt) if flt else None
        offset = request.offset or None
        text = edge.Query.Nearest(_sparse(request.text), using=TEXT_VECTOR) if request.text else None
        dense = self._dense(request)
        if dense is None and request.semantic is None:
            return edge.QueryRequest(request.limit, offset, text, filter=translated, with_payload=True)
        if text is None:
            return edge.QueryRequest(
                request.limit,
                offset,
                dense,
                filter=translated,
                with_payload=True,
                score_threshold=request.min_score,
                params=self.search_params,
            )
        # Fusion: the image (if any), BM25 and the caption meaning (if asked), ranked by RRF.
        candidates = max(HYBRID_CANDIDATES, request.limit + request.offset)
        prefetches = [edge.Prefetch(candidates, query=text, filter=translated)]
        if dense is not None:
            prefetches.insert(
                0,
                edge.Prefetch(
                    candidates,
                    query=dense,
                    filter=translated,
                    score_threshold=request.min_score,
                    params=self.search_params,
                ),
            )
        if request.semantic is not None:
            meaning = edge.Query.Nearest([request.semantic], using=SEMANTIC_VECTOR)  # a one-vector multivector
            prefetches.append(
                edge.Prefetch(
                    candidates,
                    query=meaning,
                    filter=translated,
                    score_threshold=SEMANTIC_MIN_SCORE,
                    params=self.search_params,
                )
            )
        fusion: Any = edge.Fusion.Rrf(RRF_K)  # a Fusion variant; the stubs do not say so
        return edge.QueryRequest(request.limit, offset, fusion, prefetches, filter=translated, with_payload=True)

    @staticmethod
    def _dense(request: SearchRequest) -> Any:
        if request.positives or request.negatives:
            query = edge.RecommendQuery(list[Any](request.positives), list[Any](request.negatives))
            return edge.Query.RecommendBestScore(query, using=VECTOR)
        if request.vector is None:
            return None
        if request.diversity is not None:
            # edge's lambda_ weighs relevance; Qdrant's ``diversity`` weighs the spread: 1 - lambda.
            return edge.Mmr(request.vector, 1.0 - request.diversity, MMR_CANDIDATES, using=VECTOR)
        return edge.Query.Nearest(request.vector, using=VECTOR)

    def scroll(self, collection: str, limit: int, *, offset: int = 0, flt: models.Filter | None = None) -> list[Record]:
        """``limit`` points with payloads in id order, ``offset`` matching ones skipped (see IndexBackend)."""
        # A query without a query scores nothing and answers in id order, with a numeric offset
        # (a scroll request pages by the last id seen instead).
        translated = edge_filter(flt) if flt else None
        request = edge.QueryRequest(limit, offset or None, None, filter=translated, with_payload=True)
        return [Record(str(r.id), dict(r.payload or {}), None) for r in self._reader(collection).query(request)]

    def close(self) -> None:
        """Close every open shard and release the writer locks this process holds (lingering writers folded)."""
        with self._guard:
            for name in list(self._sessions):
                self._release(name)
            for name in list(self._shards):
                self._forget(name)
            for name in list(self._locks):  # a lock without an open shard (a create that failed)
                self._locks.pop(name).close()

    # --- shard handles --------------------------------------------------------------------
    def _reader(self, name: str) -> edge.EdgeShard:
        shard = self._shards.get(name)
        if shard is not None and name in self._locks:
            # This process's own writer: its handle holds every write, nothing to check. Taken without
            # the guard, which a commit holds while it flushes (80 ms with 8 clients querying): the
            # engine answers queries during a flush, so they need not wait for it.
            return shard
        with self._guard:
            current = self._shards.get(name)
            if current is not None and name not in self._locks:
                generation = self.generation(name)
                if self._generations.get(name) != generation:
                    return self._reopened(name, current, generation)
            if name not in self._shards:
                folder = self._folder(name)
                if not (folder / CONFIG_FILE).is_file():
                    raise NotFoundError(f"no collection {name!r}")
                self._close_deleted()
                self._generations[name] = self.generation(name)
                self._shards[name] = self._load_shared(name)
                if self.warm:
                    _warm(folder)
            return self._shards[name]

    def _reopened(self, name: str, current: edge.EdgeShard, generation: int) -> edge.EdgeShard:
        """A fresh handle of a version another process's catalogue write changed, or ``current`` meanwhile.

        While that process's writer holds the version (its session lingers, up to HOLD_SECONDS once
        asked), this process answers from the handle it has rather than wait for it to let go: two
        service workers taking adds stalled each other's queries 2-3 s, and a reader that dropped its
        handle first (a probe, then a load that found the writer back) held every query of its
        worker up to HOLD_SECONDS behind the backend's guard. Its writes arrive when it lets go.
        """
        if not (self._folder(name) / CONFIG_FILE).is_file():  # another process deleted the version
            self._forget(name)
            raise NotFoundError(f"no collection {name!r}")
        fresh = self._load_shared(name, wait=False)
        if fresh is None:
            return current
        self._shards[name], self._generations[name] = fresh, generation
        current.close()
        if self.warm:
            _warm(self._folder(name))
        return fresh

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
        self._end_session(name)
        self._tell(name, False)  # a handle closed unflushed: its group-committed writes are gone
        self._forget_shard(name)
        lock = self._locks.pop(name, None)
        if lock is not None:
            lock.close()

    def _forget_shard(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()

    def _close_deleted(self) -> None:
        """Let go of versions another process has deleted (the pipeline keeps only the newest few)."""
        for name in [n for n in self._shards if not self._folder(n).is_dir()]:
            self._forget(name)

    # --- catalogue writes to a finished version (visearch.catalogue, docs/catalogue-design.md) ----
    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete the points with these ids (ids not stored are ignored), flushed before returning."""
        with self._guard:
            shard = self._writer(collection)
            shard.update(edge.UpdateOperation.delete_points(list(ids)))
            if collection not in self._sessions:  # a catalogue commit flushes it
                shard.flush()

    def acquire(self, collection: str, wait: float = LOCK_WAIT_SECONDS) -> None:
        """Take the version's writer lock, waiting up to ``wait`` seconds (a reader loads under it briefly).

        A writer this process still holds open from its last commit is used as it is (no load).

        Raises:
            IndexBusyError: another process held it for ``wait`` seconds (a pipeline building it).
        """
        deadline = time.monotonic() + wait
        while not self._try_acquire(collection):
            if time.monotonic() >= deadline:
                raise IndexBusyError(f"index version {collection} is being written by another process")
            # Waited for outside the guard: this process's queries go on while another process writes.
            self._ask_for(collection)
            time.sleep(LOCK_POLL_SECONDS)

    def _try_acquire(self, collection: str) -> bool:
        """Take the writer lock and open the writer if no other process holds it; False if one does."""
        with self._guard:
            if collection in self._locks:
                # Our lingering catalogue writer, or a pipeline replaying into the version it builds.
                if collection in self._sessions:
                    self._active.add(collection)
                return True
            try:
                self._lock_for_writing(collection)
            except IndexBusyError:
                return False
            current = self._shards.get(collection)
            if current is None or self._generations.get(collection) != self.generation(collection):
                # A handle opened for reading may predate another process's writes: load afresh.
                # Otherwise the reader becomes the writer: no load, which holds the GIL (0.3 s at
                # 70,000 points) and so stalled every query of the service.
                self._forget_shard(collection)
                try:
                    self._shards[collection] = _load(self._folder(collection))
                except VisearchError:
                    self._locks.pop(collection).close()  # no writer without a shard: the next try starts clean
                    raise
            # Announced before the first write: a writer killed after a flush but before its commit
            # still leaves other processes' handles outdated, so none becomes a writer unloaded.
            self._bump_generation(collection)
            self._sessions[collection] = self._flushed_at[collection] = time.monotonic()
            self._active.add(collection)
            return True

    def commit(self, collection: str, durable: Durable | None = None) -> None:
        """Publish writes to a finished version; release the writer now or after a linger.

        Without ``durable``: flushed before returning. With it (a group commit): a writer that
        lingers is flushed when it lets go, and ``durable(True)`` is called then (``False`` if its
        writes were lost with the handle), so a burst of writes pays one flush; a writer that does
        not linger is flushed and ``durable(True)`` called before returning. Readers of this
        process read the writer's own handle, so they see every write at once; readers in other
        processes see the new generation (bumped when the session began) and reopen under a
        shared lock, so their load waits until the writer lets go (:meth:`_release`: flush, close,
        fold the journals, unlock) — ``linger`` seconds after the last commit, at most
        ``HOLD_SECONDS`` after the first once another process asked for the version, else
        ``ALONE_HOLD_SECONDS`` (flushed, and ``durable`` told, every ``HOLD_SECONDS`` meanwhile).
        A shard's flush leaves journal files that the next load applies and deletes: the fold (a load under the writer lock) keeps readers' loads
        read-only, and a reader never loads while the writer is open (its flush would fail).
        """
        with self._guard:
            if collection not in self._locks:
                if durable is not None:
                    durable(False)
                return
            self._active.discard(collection)
            shard = self._shards.get(collection)
            since, now = self._sessions.get(collection), time.monotonic()
            lingers = not (since is None or shard is None or self.linger <= 0 or self._held_enough(collection, since))
            if durable is not None:
                self._unflushed.setdefault(collection, []).append(durable)
            # A writer held for long flushes every HOLD_SECONDS: its markers (and a crash's replay) stay short.
            flush_due = lingers and now - self._flushed_at.get(collection, now) >= HOLD_SECONDS
            if durable is None or not lingers or flush_due:
                if shard is not None:
                    shard.flush()
                self._flushed_at[collection] = now
                self._bump_generation(collection)
                self._tell(collection, True)
            if not lingers:
                self._release(collection)
                return
            self._schedule_release(collection)

    def _held_enough(self, collection: str, since: float) -> bool:
        """Whether a lingering writer lets go at this commit (held ``ALONE_HOLD_SECONDS``, or asked for).

        ``HOLD_SECONDS`` after its session began once another process asked for the version since.
        """
        held = time.monotonic() - since
        if held >= ALONE_HOLD_SECONDS:
            return True
        if held < HOLD_SECONDS:
            return False
        try:
            asked = self._want_path(collection).stat().st_mtime
        except FileNotFoundError:
            return False
        # A file's mtime comes from the kernel's coarse clock, a timer tick behind time.time().
        return asked >= time.time() - held - ASK_CLOCK_SLACK

    def _ask_for(self, name: str) -> None:
        """Ask another process's lingering writer to let go of ``name`` soon: touch its want file."""
        now = time.monotonic()
        if now - self._asked_at.get(name, -ASK_EVERY_SECONDS) < ASK_EVERY_SECONDS:
            return
        self._asked_at[name] = now
        try:
            self._want_path(name).touch()
        except OSError:  # e.g. a read-only index folder: the writer lets go within ALONE_HOLD_SECONDS
            LOG.debug("cannot ask for index version %s", name, exc_info=True)

    def _want_path(self, name: str) -> Path:
        return self.shards_dir / f"{name}.wanted"

    def _tell(self, collection: str, flushed: bool) -> None:
        """Tell the group-committed writers of ``collection`` whether their writes are on disk."""
        for durable in self._unflushed.pop(collection, []):
            try:
                durable(flushed)
            except Exception:  # noqa: BLE001 - one listener's failure must not lose the others' news
                LOG.exception("a catalogue write's durability listener failed on %s", collection)

    def _schedule_release(self, collection: str) -> None:
        """Let go ``linger`` seconds from now: one timer per session, moved on by each commit.

        (A thread started per commit cost ~0.4 ms of an add's ~6.)
        """
        self._idle_at[collection] = time.monotonic() + self.linger
        if collection not in self._timers:
            self._arm(collection, self.linger)

    def _arm(self, collection: str, seconds: float) -> None:
        timer = threading.Timer(seconds, self._release_idle, args=(collection,))
        timer.daemon = True
        self._timers[collection] = timer
        timer.start()

    def _release_idle(self, collection: str) -> None:
        """The linger timer: release once idle, unless a write is under way (its commit moves the time)."""
        with self._guard:
            if self._timers.get(collection) is not threading.current_thread():
                return  # a timer cancelled too late: a newer one (or none) stands
            self._timers.pop(collection, None)
            if collection not in self._sessions or collection in self._active:
                return
            left = self._idle_at.get(collection, 0.0) - time.monotonic()
            if left > 0:
                self._arm(collection, left)
                return
            self._release(collection)

    def _release(self, collection: str) -> None:
        """Close the writer, fold its journals (kept open as this process's reader), unlock."""
        self._end_session(collection)
        shard = self._shards.pop(collection, None)
        flushed = False
        try:
            if shard is not None:
                shard.flush()
                flushed = True
                self._tell(collection, True)
                shard.close()
                self._shards[collection] = _load(self._folder(collection))  # the fold, under the writer lock
            self._generations[collection] = self.generation(collection)
        finally:
            if not flushed:
                self._tell(collection, False)
            lock = self._locks.pop(collection, None)
            if lock is not None:
                lock.close()

    def _end_session(self, name: str) -> None:
        self._sessions.pop(name, None)
        self._idle_at.pop(name, None)
        self._flushed_at.pop(name, None)
        self._active.discard(name)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def generation(self, collection: str) -> int:
        """How many catalogue commits the version has had (0: none); one ``stat``-sized read per call."""
        try:
            return int(self._generation_path(collection).read_text(encoding="ascii") or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _generation_path(self, name: str) -> Path:
        return self.shards_dir / f"{name}.generation"

    def _bump_generation(self, name: str) -> None:
        temporary = self.shards_dir / f".{name}.generation.{os.getpid()}.{threading.get_ident()}"
        temporary.write_text(str(self.generation(name) + 1), encoding="ascii")
        os.replace(temporary, self._generation_path(name))

    def _lock_refused(self, name: str, mode: int) -> bool:
        """Whether another holder refuses a ``mode`` flock of the version's lock file now (one non-blocking try).

        ``LOCK_SH`` is refused by a writer only; ``LOCK_EX`` also by a reader loading the version.
        """
        try:
            with open(self._lock_path(name), "rb") as handle:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
        return False

    @overload
    def _load_shared(self, name: str) -> edge.EdgeShard: ...

    @overload
    def _load_shared(self, name: str, *, wait: Literal[False]) -> edge.EdgeShard | None: ...

    def _load_shared(self, name: str, *, wait: bool = True) -> edge.EdgeShard | None:
        """Load a version for reading under a shared lock: never while another process writes it.

        ``wait=False``: None at once (after asking for the version) while another process writes it.
        """
        folder = self._folder(name)
        if name in self._locks or not self._lock_path(name).exists():
            return _load(folder)  # this process holds the writer lock (a second flock would wait on it)
        with open(self._lock_path(name), "rb") as handle:
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    self._ask_for(name)
                    if not wait:
                        return None
                    if time.monotonic() >= deadline:
                        raise IndexBusyError(f"index version {name} is being written by another process") from exc
                    time.sleep(LOCK_POLL_SECONDS)
            return _load(folder)


def _plain(name: str) -> bool:
    """A name that stays one file inside its folder (no separators, not hidden, not empty)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and "\0" not in name


def _warm(folder: Path) -> None:
    """Read every file of a shard once, in large sequential reads, into the page cache.

    The engine memory-maps vectors and graph; pages the kernel reclaimed since they were written
    would otherwise come back one random read at a time during the first queries. Best effort:
    files the engine (here or in another process) removes meanwhile are skipped.
    """
    buffer = bytearray(WARM_CHUNK)
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                with open(os.path.join(parent, name), "rb", buffering=0) as handle:
                    while handle.readinto(buffer):
                        pass
            except OSError:
                continue


def _load(folder: Path) -> edge.EdgeShard:
    try:
        return edge.EdgeShard.load(str(folder))
    except Exception as exc:  # qdrant-edge raises plain Exception with the engine's message
        raise VisearchError(f"cannot open index version {folder.name}: {exc}") from exc


def _point_vectors(vector: np.ndarray, text: Sparse | None, meaning: list[list[float]] | None) -> dict[str, Any]:
    vectors: dict[str, Any] = {VECTOR: vector.tolist()}
    if text is not None:
        vectors[TEXT_VECTOR] = _sparse(text)
    if meaning is not None:
        vectors[SEMANTIC_VECTOR] = meaning
    return vectors


def _sparse(vector: Sparse) -> edge.SparseVector:
    return edge.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _hits(points: Sequence[Any]) -> list[Hit]:
    # A point without payload is one another process deleted, seen through a handle opened before
    # (docs/catalogue-design.md): every point written has a payload, so it is left out.
    return [Hit(str(p.id), float(p.score), dict(p.payload)) for p in points if p.payload]


def edge_filter(flt: models.Filter) -> edge.Filter:
    """qdrant-client's filter model (checked by :func:`visearch.index.filters.parse_filter`) as edge's."""
    translated = {name: [_edge_condition(c) for c in conditions] for name, conditions in clauses(flt)}
    min_should = None
    if flt.min_should is not None:
        conditions = [_edge_condition(c) for c in flt.min_should.conditions]
        min_should = edge.MinShould(conditions, flt.min_should.min_count)
    return edge.Filter(
        must=translated.get("must"),
        should=translated.get("should"),
        must_not=translated.get("must_not"),
        min_should=min_should,
    )


def _edge_condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return edge_filter(condition)
    if isinstance(condition, models.HasIdCondition):
        return edge.HasIdCondition({str(pid) for pid in condition.has_id})
    if not isinstance(condition, models.FieldCondition):
        raise VisearchError(f"the embedded index cannot run the condition {condition!r}")
    if condition.range is not None:
        bounds = condition.range
        # parse_filter admits numeric ranges only (models.Range), never DatetimeRange.
        assert isinstance(bounds, models.Range)
        return edge.FieldCondition(
            key=condition.key, range=edge.RangeFloat(gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)
        )
    match = condition.match
    if isinstance(match, models.MatchValue):
        translated: Any = edge.MatchValue(match.value)
    elif isinstance(match, models.MatchAny):
        translated = edge.MatchAny(cast(Any, list(match.any)))
    elif isinstance(match, models.MatchExcept):
        translated = edge.MatchExcept(cast(Any, list(match.except_)))
    elif isinstance(match, models.MatchText):
        translated = edge.MatchText(match.text)
    else:
        raise VisearchError(f"the embedded index cannot run the match {match!r}")
    return edge.FieldCondition(key=condition.key, match=translated)


def _vector(vector: Any) -> list[float] | None:
    values = vector.get(VECTOR) if isinstance(vector, dict) else vector
    return [float(v) for v in values] if isinstance(values, list) else None
