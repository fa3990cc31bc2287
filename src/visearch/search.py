"""SearchEngine: the one query path (CLI, REST and UI all call it).

category → live collection (alias) → the model version that produced its vectors → lazily
loaded, cached model (:mod:`visearch.inference`) → Qdrant query. A reindex or rollback changes
the alias; the next query follows it and loads the matching model.

Every search method takes :class:`visearch.search_options.SearchOptions` as keyword arguments (k,
min_similarity, class_filter, filter, text, offset, diverse, group_by_class) and returns a
:class:`visearch.search_options.SearchAnswer` (results, notice, model version, next offset). A query
image may be a decoded image or the uploaded bytes: bytes are decoded at the scale the model of
the version the query resolved needs, so one query reads the alias once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visearch.batcher import ForwardBatcher
from visearch.categories import Registry
from visearch.data.images import decode_image
from visearch.data.manifest import cache_dir
from visearch.data.transforms import decode_side
from visearch.errors import ConflictError, InvalidQueryError, NotFoundError, VisearchError
from visearch.index import CollectionVersion, Hit, SearchRequest, VectorIndex
from visearch.index.filters import parse_filter
from visearch.index.versions import has_semantic, schema_lag
from visearch.inference import Backend, Embedder, load_embedder, preprocess
from visearch.load_once import LoadOnce
from visearch.model import ONNX_FILE, WEIGHT_FILES, resolve_device, store_key
from visearch.neighbours import NeighbourStats, load_stats
from visearch.search_options import (
    UNUSUAL_NOTICE,
    BatchAnswer,
    DuplicatesPage,
    SearchAnswer,
    SearchOptions,
    SearchResult,
    build_request,
    check_batch,
    check_int,
    duplicates_page,
)
from visearch.settings import Settings
from visearch.storage import ObjectStore

__all__ = [
    "BatchAnswer",
    "CategoryInfo",
    "QueryImage",
    "SearchAnswer",
    "SearchEngine",
    "SearchOptions",
    "SearchResult",
]
# A query image: decoded, or the uploaded bytes (decoded by the engine at its model's scale).
QueryImage = Image.Image | bytes
MAX_FACET_VALUES = 1000
MAX_DUPLICATES_PAGE = 100
MAX_DUPLICATES_OFFSET = 10**9


@dataclass
class CategoryInfo:
    """What a client needs to present a category: texts from the registry, size of its live index."""

    name: str
    title: str
    business_usage: str
    credits: str
    image_count: int
    indexed: bool
    index_lag: str | None = None  # why the live index does not serve the registry's fields/captions yet

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field."""
        return {
            "name": self.name,
            "title": self.title,
            "business_usage": self.business_usage,
            "credits": self.credits,
            "image_count": self.image_count,
            "indexed": self.indexed,
            "index_lag": self.index_lag,
        }


class SearchEngine:
    """Answers queries for every category of the registry; models load on first use per category."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ObjectStore,
        index: VectorIndex,
        *,
        backend: Backend | None = None,
    ) -> None:
        backend = backend or settings.inference_backend
        if backend not in ("onnx", "torch"):
            raise InvalidQueryError(f"unknown inference backend {backend!r} (onnx or torch)")
        self.settings = settings
        self.registry = registry
        self.store = store
        self.index = index
        self.backend = backend
        # One load per (category, model version); loading fetches from the object store, so no lock
        # is held across it (a stuck store must not stop queries whose model is loaded).
        self._models: LoadOnce[tuple[str, str], Embedder] = LoadOnce()
        # Forwards run one per slot (a core's worth of intra-op threads each); concurrent queries of
        # one model wait for a slot together and share one forward (visearch.batcher).
        # Torch eager spreads one forward over every core itself: one slot.
        slots = settings.forward_slots if backend == "onnx" else 1
        self._forwards = ForwardBatcher(
            slots, max_images=settings.max_forward_images, max_wait=settings.batch_wait_ms / 1000
        )
        self._stats: LoadOnce[str, NeighbourStats | None] = LoadOnce()

    # --- validation ------------------------------------------------------------------------
    def options(self, options: SearchOptions | None = None, **overrides: Any) -> SearchOptions:
        """Checked options: ``options`` (default: the defaults) with ``overrides`` (keyword options) applied.

        Raises:
            InvalidQueryError: an unknown option or a value out of its limits.
        """
        base = options or SearchOptions()
        try:
            merged = dataclasses.replace(base, **overrides)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(SearchOptions))
            raise InvalidQueryError(f"unknown search option in {sorted(overrides)}; known: {known}") from exc
        merged.check(self.settings.max_k)
        return merged

    def live_version(self, category: str) -> CollectionVersion:
        """The live index version of a registry category.

        The registry is asked first: names from requests never reach the index unchecked (the
        embedded index keeps a category's alias in a file of that name).
        """
        self.registry.get(category)
        return self.index.require_live(category)

    # --- models ----------------------------------------------------------------------------
    def model_for(self, category: str, live: CollectionVersion | None = None) -> Embedder:
        """The model whose vectors the live collection (or ``live``) holds (loaded once, then cached)."""
        live = live or self.live_version(category)
        version = live.model_version
        return self._models.get((category, version), lambda: self._load_model(category, version))

    def _load_model(self, category: str, version: str) -> Embedder:
        directory = self._fetch_model(category, version)
        cache = cache_dir(self.settings) / "onnx" / category / version
        return load_embedder(
            directory,
            backend=self.backend,
            onnx_cache=cache,
            device=resolve_device(self.settings.visearch_device),
            threads=self.settings.forward_threads,
        )

    def _fetch_model(self, category: str, version: str) -> Path:
        cache = cache_dir(self.settings)
        paths = [self.store.local_path(store_key(category, version, name), cache) for name in WEIGHT_FILES]
        onnx_key = store_key(category, version, ONNX_FILE)
        if self.backend == "onnx" and self.store.exists(onnx_key):
            self.store.local_path(onnx_key, cache)
        return paths[0].parent

    def embed_images(
        self, category: str, images: Sequence[Image.Image], live: CollectionVersion | None = None
    ) -> np.ndarray:
        """Embed several images in one forward pass (N×D), with the model of ``live`` (default: now live)."""
        model = self.model_for(category, live)
        # Keyed by category and model version: one loaded model each (self._models).
        key = (category, model.spec.version or str(id(model)))
        return self._forwards.embed(key, model, preprocess(images, model.spec))

    def query_side(self, category: str, live: CollectionVersion | None = None) -> int:
        """The shorter side a query image is decoded at: what the model of ``live`` (default: now live) needs."""
        return decode_side(self.model_for(category, live).spec.input_size)

    def _decoded(self, category: str, images: Sequence[QueryImage], live: CollectionVersion) -> list[Image.Image]:
        """The query images decoded for the model of ``live`` (the version the query already resolved)."""
        # The model is asked only when there are bytes: decoded images need nothing of it here.
        side = self.query_side(category, live) if any(isinstance(image, bytes) for image in images) else 0
        return [self.decode(image, min_side=side) if isinstance(image, bytes) else image for image in images]

    # --- queries (options as keywords, each answers a SearchAnswer) ----------------------------
    def search(self, category: str, image: QueryImage | None = None, **options: Any) -> SearchAnswer:
        """Search with an image (or its bytes), caption text (``text=``) or both (hybrid).

        Raises:
            InvalidQueryError: neither an image nor text, or an option out of its limits.
        """
        if image is None:
            return self.search_text(category, options.pop("text", None), **options)
        return self.search_many(category, [image], **options)[0]

    def search_many(self, category: str, images: Sequence[QueryImage], **options: Any) -> list[SearchAnswer]:
        """One answer per image (or its bytes); the images are embedded as one batch."""
        opts = self.options(**options)
        if not images:
            raise InvalidQueryError("no images given")
        # Resolve the alias once: the decode size, the model and the collection of one request are
        # the same version, even when a reindex swaps the alias meanwhile.
        live = self.live_version(category)
        vectors = self.embed_images(category, self._decoded(category, images, live), live)
        return [self._answer(category, live, opts, vector=list(map(float, v))) for v in vectors]

    def search_batch(self, category: str, images: Sequence[QueryImage], **options: Any) -> BatchAnswer:
        """Several query images (or their bytes) as one request: 1 to ``Settings.max_batch_images`` of them.

        Raises:
            InvalidQueryError: no image or too many, or an option out of its limits.
        """
        check_batch(len(images), self.settings.max_batch_images)
        return BatchAnswer.of(self.search_many(category, images, **options))

    def search_text(self, category: str, text: str | None, **options: Any) -> SearchAnswer:
        """Images whose caption columns hold the words (BM25) or, fused by RRF, the meaning of ``text``.

        The meaning counts where the live index holds semantic caption vectors.

        Raises:
            InvalidQueryError: the category has no caption columns, or ``text`` has no searchable word.
        """
        opts = self.options(text=text, **options)
        if not self.registry.get(category).captions:
            raise InvalidQueryError(f"category {category} has no caption columns")
        if not (opts.text or "").strip():
            raise InvalidQueryError("give an image or text to search with")
        live = self.live_version(category)
        return self._answer(category, live, opts)

    def vector_search(
        self, category: str, vector: Sequence[float], *, model_version: str | None = None, **options: Any
    ) -> SearchAnswer:
        """Neighbours of a query vector; refused unless it has the live model's version and dimension.

        Raises:
            ConflictError: ``model_version`` is not the live model's (embed the image again).
            InvalidQueryError: the vector has another dimension than the live model's.
        """
        opts = self.options(**options)
        live = self.live_version(category)
        if model_version is not None and model_version != live.model_version:
            raise ConflictError(
                f"the vector was made by model {model_version}; category {category!r} now searches with "
                f"{live.model_version}: embed the image again"
            )
        dim = self.model_for(category, live).spec.embedding_dim
        if len(vector) != dim:
            raise InvalidQueryError(
                f"vector has {len(vector)} dimensions; category {category!r} uses {dim} ({live.name})"
            )
        return self._answer(category, live, opts, vector=list(map(float, vector)))

    def similar(self, category: str, point_id: str, **options: Any) -> SearchAnswer:
        """More like this: neighbours of a stored image (itself excluded; no "unusual" notice)."""
        opts = self.options(**options)
        live = self.live_version(category)
        _, vector = self.index.get(live.name, point_id, with_vector=True)
        if vector is None:
            raise NotFoundError(f"no vector stored for {point_id}")
        return self._answer(category, live, opts, vector=vector, exclude=[point_id], judge=False)

    def search_by_id(self, category: str, point_id: str, **options: Any) -> SearchAnswer:
        """More like a stored image, itself excluded: its neighbours (:meth:`similar`).

        With caption ``text`` the stored image becomes the one positive example of a hybrid
        :meth:`recommend` (its score kind is then ``rrf``).
        """
        text = options.pop("text", None)
        if text:
            return self.recommend(category, [point_id], text=text, **options)
        return self.similar(category, point_id, **options)

    def recommend(
        self,
        category: str,
        positive_ids: Sequence[str] = (),
        negative_ids: Sequence[str] = (),
        positive_images: Sequence[QueryImage] = (),
        negative_images: Sequence[QueryImage] = (),
        **options: Any,
    ) -> SearchAnswer:
        """Images like the positive examples and unlike the negative ones (stored ids and/or images or their bytes).

        Qdrant's recommend query, strategy best_score: a point scores by its similarity to the
        closest positive, and is penalised when a negative is closer than every positive. The
        stored examples never come back. ``text`` makes it hybrid; ``diverse`` is refused.

        Raises:
            InvalidQueryError: no positive example, too many examples, or ``diverse``.
            NotFoundError: an id that is not in the live index.
        """
        opts = self.options(**options)
        if not (positive_ids or positive_images):
            raise InvalidQueryError("recommend needs at least one positive example (an id or an image)")
        examples = len(positive_ids) + len(negative_ids) + len(positive_images) + len(negative_images)
        if examples > self.settings.max_batch_images:
            raise InvalidQueryError(f"at most {self.settings.max_batch_images} examples, got {examples}")
        if opts.diverse:
            raise InvalidQueryError("diverse works with one query image, not with recommend")
        live = self.live_version(category)
        images = self._decoded(category, [*positive_images, *negative_images], live)
        ids = [*positive_ids, *negative_ids]
        stored = self.index.vectors(live.name, ids) if ids else {}
        missing = [pid for pid in ids if pid not in stored]
        if missing:
            self.index.get(live.name, missing[0])  # raises the usual NotFoundError for it
        embedded = [list(map(float, v)) for v in self.embed_images(category, images, live)] if images else []
        positives = [stored[pid] for pid in positive_ids] + embedded[: len(positive_images)]
        negatives = [stored[pid] for pid in negative_ids] + embedded[len(positive_images) :]
        return self._answer(category, live, opts, positives=positives, negatives=negatives, exclude=ids)

    def facets(self, category: str, column: str, *, filter: Any = None, limit: int = 100) -> list[tuple[Any, int]]:
        """(value, count) of a keyword column in the live index, most frequent first (UI filter controls).

        Raises:
            InvalidQueryError: ``column`` is not a keyword column of the category, or a bad filter/limit.
        """
        cat = self.registry.get(category)
        kinds = cat.filterable
        if kinds.get(column) != "keyword":
            keywords = ", ".join(c for c, kind in kinds.items() if kind == "keyword")
            raise InvalidQueryError(f"facets need a keyword column; {category!r} has: {keywords}")
        check_int("limit", limit, 1, MAX_FACET_VALUES)
        flt = parse_filter(filter, kinds)
        live = self.live_version(category)
        return self.index.facet(live.name, column, limit=limit, flt=flt)

    def duplicates(self, category: str, offset: int = 0, limit: int = 20) -> DuplicatesPage:
        """A page of the live index's near-duplicate pairs (above the category's ``duplicate_threshold``).

        Measured at upsert (:mod:`visearch.neighbours`); an index built before then has none.
        """
        check_int("offset", offset, 0, MAX_DUPLICATES_OFFSET)
        check_int("limit", limit, 1, MAX_DUPLICATES_PAGE)
        threshold = self.registry.get(category).duplicate_threshold
        live = self.live_version(category)
        stats = self.stats(live)
        pairs = stats.duplicates if stats else []
        ids = sorted({pair[side] for pair in pairs[offset : offset + limit] for side in ("a", "b")})
        payloads = {record.id: record.payload for record in self.index.records(live.name, ids)}
        return duplicates_page(pairs, payloads, offset, limit, stats.threshold if stats else threshold)

    def stats(self, live: CollectionVersion) -> NeighbourStats | None:
        """The nearest-neighbour statistics of an index version (read once from the store, then cached)."""
        return self._stats.get(live.name, lambda: load_stats(self.store, live.name))

    # --- the one query path ---------------------------------------------------------------------
    def _answer(
        self,
        category: str,
        live: CollectionVersion,
        opts: SearchOptions,
        *,
        vector: list[float] | None = None,
        positives: list[list[float]] | None = None,
        negatives: list[list[float]] | None = None,
        exclude: Sequence[str] = (),
        judge: bool = True,
    ) -> SearchAnswer:
        entry = self.registry.get(category)
        # Text matches by meaning too where the live version holds semantic caption vectors.
        semantic = bool(opts.text) and has_semantic(live, entry.fields, entry.captions, entry.meaning)
        request, kind = build_request(
            entry, opts, vector=vector, positives=positives, negatives=negatives, exclude=exclude, semantic=semantic
        )
        if opts.group_by_class:
            hits = self.index.best_per_group(live.name, request, "class")
        else:
            hits = self.index.search(live.name, request)
        # A stored image as the query (judge=False) is neither judged nor calibrated: it needs only
        # the index, so "more like this" still answers while the object store is down.
        stats = self.stats(live) if judge and kind == "cosine" else None
        results = [
            SearchResult.from_hit(hit, stats.calibrated(hit.score) if stats and kind == "cosine" else None)
            for hit in hits
        ]
        # The page's first hit is the category's nearest unless a filter, an offset, caption text,
        # diversity or grouping shaped the page.
        shaped = bool(request.filter or request.offset or request.text or request.diversity or opts.group_by_class)
        best = hits[0].score if hits and kind == "cosine" else None
        notice = self._notice(live, stats, vector, exclude, best, whole=not shaped) if judge else None
        full = len(hits) == opts.k and not opts.group_by_class
        return SearchAnswer(
            results, live.model_version, live.name, kind, notice, opts.offset + opts.k if full else None
        )

    def _notice(
        self,
        live: CollectionVersion,
        stats: NeighbourStats | None,
        vector: list[float] | None,
        exclude: Sequence[str],
        best: float | None,
        *,
        whole: bool,
    ) -> str | None:
        """The "unusual" notice, when the query's nearest neighbour is below the category's usual range.

        The nearest neighbour in the whole category counts. ``best`` is the page's best cosine score:
        the nearest's own when the page is ``whole`` (nothing shaped it); otherwise at most the
        nearest's, so a page below the range asks the index for the nearest.
        """
        floor = stats.similarity_at(self.settings.visearch_unusual_percentile) if stats else None
        if floor is None or vector is None:
            return None
        if best is None or (best < floor and not whole):
            found = self.index.search(live.name, SearchRequest(1, vector=vector, exclude_ids=list(exclude)))
            best = found[0].score if found else None
        return UNUSUAL_NOTICE if best is not None and best < floor else None

    def embed_many_versioned(
        self, requests: Sequence[tuple[str, bytes]]
    ) -> list[tuple[np.ndarray, str] | VisearchError]:
        """Embed (category, image bytes) pairs: one forward pass per category, one outcome per pair.

        An outcome is the vector with the model version that made it (for :meth:`vector_search`),
        or the error of that pair: a bad image or category fails only its own pair (the server
        merges concurrent requests into one call, so one client's bad upload must not fail another's).
        """
        outcomes: list[tuple[np.ndarray, str] | VisearchError] = [VisearchError("not embedded")] * len(requests)
        groups: dict[str, list[int]] = {}
        for position, (category, _) in enumerate(requests):
            try:
                self.registry.get(category)
            except VisearchError as exc:
                outcomes[position] = exc
                continue
            groups.setdefault(category, []).append(position)
        for category, positions in groups.items():
            group = self._embed_group(category, [requests[position][1] for position in positions])
            for position, outcome in zip(positions, group, strict=True):
                outcomes[position] = outcome
        return outcomes

    def _embed_group(self, category: str, datas: Sequence[bytes]) -> list[tuple[np.ndarray, str] | VisearchError]:
        """One category's images in one pass; the alias is read once, for the decode size and the vectors."""
        try:
            live = self.live_version(category)
            side = self.query_side(category, live)
        except VisearchError as exc:
            return [exc] * len(datas)
        decoded: list[Image.Image | VisearchError] = []
        for data in datas:
            try:
                decoded.append(self.decode(data, min_side=side))
            except VisearchError as exc:  # a bad image fails only its own item
                decoded.append(exc)
        images = [item for item in decoded if isinstance(item, Image.Image)]
        try:
            vectors = iter(self.embed_images(category, images, live) if images else [])
        except VisearchError as exc:
            return [item if isinstance(item, VisearchError) else exc for item in decoded]
        return [item if isinstance(item, VisearchError) else (next(vectors), live.model_version) for item in decoded]

    def decode(self, data: bytes, *, min_side: int = 0) -> Image.Image:
        """Untrusted bytes → RGB image, within the configured byte and pixel limits.

        ``min_side`` asks for at least that shorter side: a query's :meth:`query_side` (a phone JPEG
        decoded at 1/8, not full size) or a display size; 0: full size.
        """
        return decode_image(
            data,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
            min_side=min_side or None,
        )

    def image(self, category: str, point_id: str) -> tuple[bytes, dict[str, Any]]:
        """The stored image bytes of a point, with its payload."""
        live = self.live_version(category)
        payload, _ = self.index.get(live.name, point_id)
        return self.store.get_bytes(str(payload["image_key"])), payload

    def examples(self, category: str, limit: int = 12) -> list[SearchResult]:
        """A few stored images of the category (for "pick an example" in the UI)."""
        live = self.live_version(category)
        check_int("limit", limit, 1, self.settings.max_k)
        return [SearchResult.from_hit(Hit(pid, 1.0, payload)) for pid, payload in self.index.sample(live.name, limit)]

    def categories(self) -> list[CategoryInfo]:
        """Every registry category with its texts and the size of its live index (0 when not built)."""
        infos = []
        for category in self.registry.categories:
            live = self.index.live(category.name)
            count = self.index.count(live.name) if live else 0
            infos.append(
                CategoryInfo(
                    category.name,
                    category.title,
                    category.business_usage.strip(),
                    category.credits.strip(),
                    count,
                    live is not None,
                    schema_lag(live, category.fields, category.captions, category.meaning),
                )
            )
        return infos

    def close(self) -> None:
        """Release the index (open shard files or the server connection)."""
        self.index.close()
