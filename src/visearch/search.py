"""SearchEngine: the one query path (CLI, REST and UI all call it).

category → live collection (alias) → the model version that produced its vectors → lazily
loaded, cached model (:mod:`visearch.inference`) → Qdrant query. A reindex or rollback changes
the alias; the next query follows it and loads the matching model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visearch.categories import Registry
from visearch.data.images import decode_image
from visearch.data.manifest import cache_dir
from visearch.data.transforms import decode_side
from visearch.errors import InvalidQueryError, NotFoundError, VisearchError
from visearch.index import CollectionVersion, Hit, VectorIndex
from visearch.inference import Backend, Embedder, load_embedder, preprocess
from visearch.model import ONNX_FILE, WEIGHT_FILES, resolve_device, store_key
from visearch.once import LoadOnce
from visearch.settings import Settings
from visearch.storage import ObjectStore

CORE_FIELDS = ("file", "class", "label", "image_key", "image_uri")
MAX_CLASS_FILTER_CHARS = 200


@dataclass
class SearchResult:
    """One similar image: its point id, score, similarity in percent, class, file, captions and store key."""

    id: str
    score: float
    similarity: float
    cls: str
    file: str
    captions: dict[str, Any] = field(default_factory=dict)
    image_key: str = ""

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchResult:
        """The result for an index hit; payload fields other than the core ones become captions."""
        payload = hit.payload
        captions = {k: v for k, v in payload.items() if k not in CORE_FIELDS}
        return cls(
            hit.id,
            round(hit.score, 6),
            hit.similarity_percent,
            str(payload.get("class", "")),
            str(payload.get("file", "")),
            captions,
            str(payload.get("image_key", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the store key, with ``class`` for ``cls``."""
        return {
            "id": self.id,
            "score": self.score,
            "similarity": self.similarity,
            "class": self.cls,
            "file": self.file,
            "captions": self.captions,
        }


@dataclass
class CategoryInfo:
    """What a client needs to present a category: texts from the registry, size of its live index."""

    name: str
    title: str
    business_usage: str
    credits: str
    image_count: int
    indexed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field."""
        return {
            "name": self.name,
            "title": self.title,
            "business_usage": self.business_usage,
            "credits": self.credits,
            "image_count": self.image_count,
            "indexed": self.indexed,
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
        # One forward pass at a time: ONNX Runtime (and torch) already spread one batch over every
        # core, so two at once only contend. Held for compute only, never for I/O; a pass is
        # bounded by MAX_BATCH_IMAGES.
        self._compute = threading.Lock()

    # --- validation ------------------------------------------------------------------------
    def check_params(self, k: int, min_similarity: float, class_filter: str | None = None) -> None:
        """Raise InvalidQueryError unless ``k``, ``min_similarity`` and ``class_filter`` are within the limits."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise InvalidQueryError(f"k must be an integer from 1 to {self.settings.max_k}, got {k!r}")
        if (
            isinstance(min_similarity, bool)
            or not isinstance(min_similarity, int | float)
            or not 0 <= min_similarity <= 100
        ):
            raise InvalidQueryError(f"min_similarity must be a percentage from 0 to 100, got {min_similarity!r}")
        if class_filter is not None and (
            not isinstance(class_filter, str) or len(class_filter) > MAX_CLASS_FILTER_CHARS
        ):
            raise InvalidQueryError(f"class_filter must be a class name of at most {MAX_CLASS_FILTER_CHARS} characters")

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
            directory, backend=self.backend, onnx_cache=cache, device=resolve_device(self.settings.visearch_device)
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
        batch = preprocess(images, model.spec)
        with self._compute:
            return model.embed(batch)

    def embed_image(self, category: str, image: Image.Image) -> np.ndarray:
        """Embed one image with the model of the category's live version."""
        return self.embed_images(category, [image])[0]

    # --- queries ---------------------------------------------------------------------------
    def search_image(
        self,
        category: str,
        image: Image.Image,
        *,
        k: int = 10,
        min_similarity: float = 0.0,
        class_filter: str | None = None,
    ) -> list[SearchResult]:
        """Most similar images of ``category``; ``min_similarity`` is a percent (the seed's benchmark)."""
        return self.search_images(category, [image], k=k, min_similarity=min_similarity, class_filter=class_filter)[0]

    def search_images(
        self,
        category: str,
        images: Sequence[Image.Image],
        *,
        k: int = 10,
        min_similarity: float = 0.0,
        class_filter: str | None = None,
    ) -> list[list[SearchResult]]:
        """One result list per image; the images are embedded as one batch."""
        self.check_params(k, min_similarity, class_filter)
        if not images:
            raise InvalidQueryError("no images given")
        # Resolve the alias once: the model and the collection of one request are the same version,
        # even when a reindex swaps the alias meanwhile.
        live = self.live_version(category)
        vectors = self.embed_images(category, images, live)
        return [self._query(live.name, vector, k, min_similarity, class_filter) for vector in vectors]

    def search_bytes(self, category: str, data: bytes, **options: Any) -> list[SearchResult]:
        """Search with an uploaded image's bytes; ``options`` as for :meth:`search_image`."""
        return self.search_image(category, self.decode(data, category), **options)

    def decode(self, data: bytes, category: str | None = None, *, min_side: int = 0) -> Image.Image:
        """Untrusted bytes → RGB image, within the configured byte and pixel limits.

        With ``category``, decoded at the scale its live model needs (a phone JPEG at 1/8, not
        full size); ``min_side`` asks for at least that shorter side (display); neither: full size.
        """
        if category is not None:
            min_side = max(min_side, decode_side(self.model_for(category).spec.input_size))
        return decode_image(
            data,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
            min_side=min_side or None,
        )

    def embed_many(self, requests: Sequence[tuple[str, bytes]]) -> list[np.ndarray | VisearchError]:
        """Embed (category, image bytes) pairs: one forward pass per category, one outcome per pair.

        A bad image or category fails only its own pair (the server merges concurrent requests
        into one call, so one client's bad upload must not fail another's).
        """
        outcomes: list[np.ndarray | VisearchError] = [VisearchError("not embedded")] * len(requests)
        groups: dict[str, list[tuple[int, Image.Image]]] = {}
        for position, (category, data) in enumerate(requests):
            try:
                self.registry.get(category)
                image = self.decode(data, category)
            except VisearchError as exc:
                outcomes[position] = exc
                continue
            groups.setdefault(category, []).append((position, image))
        for category, members in groups.items():
            try:
                vectors = self.embed_images(category, [image for _, image in members])
            except VisearchError as exc:
                vectors = [exc] * len(members)  # type: ignore[assignment]
            for (position, _), vector in zip(members, vectors, strict=True):
                outcomes[position] = vector
        return outcomes

    def search_vector(
        self,
        category: str,
        vector: Sequence[float],
        *,
        k: int = 10,
        min_similarity: float = 0.0,
        class_filter: str | None = None,
    ) -> list[SearchResult]:
        """Neighbours of a query vector produced by this category's live model (see ``embed_many``)."""
        self.check_params(k, min_similarity, class_filter)
        live = self.live_version(category)
        dim = self.model_for(category, live).spec.embedding_dim
        if len(vector) != dim:
            raise InvalidQueryError(
                f"vector has {len(vector)} dimensions; category {category!r} uses {dim} ({live.name})"
            )
        return self._query(live.name, vector, k, min_similarity, class_filter)

    def search_id(
        self,
        category: str,
        point_id: str,
        *,
        k: int = 10,
        min_similarity: float = 0.0,
        class_filter: str | None = None,
    ) -> list[SearchResult]:
        """More like this: neighbours of a stored image (the image itself excluded)."""
        self.check_params(k, min_similarity, class_filter)
        live = self.live_version(category)
        _, vector = self.index.get(live.name, point_id, with_vector=True)
        if vector is None:
            raise NotFoundError(f"no vector stored for {point_id}")
        return self._query(live.name, vector, k, min_similarity, class_filter, exclude_id=point_id)

    def _query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        min_similarity: float,
        class_filter: str | None,
        exclude_id: str | None = None,
    ) -> list[SearchResult]:
        hits = self.index.query(
            collection,
            vector,
            k=k,
            min_score=min_similarity / 100 or None,
            class_filter=class_filter or None,
            exclude_id=exclude_id,
        )
        return [SearchResult.from_hit(hit) for hit in hits]

    def image(self, category: str, point_id: str) -> tuple[bytes, dict[str, Any]]:
        """The stored image bytes of a point, with its payload."""
        live = self.live_version(category)
        payload, _ = self.index.get(live.name, point_id)
        return self.store.get_bytes(str(payload["image_key"])), payload

    def examples(self, category: str, limit: int = 12) -> list[SearchResult]:
        """A few stored images of the category (for "pick an example" in the UI)."""
        live = self.live_version(category)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self.settings.max_k:
            raise InvalidQueryError(f"limit must be an integer from 1 to {self.settings.max_k}, got {limit!r}")
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
                )
            )
        return infos

    def close(self) -> None:
        """Release the index (open shard files or the server connection)."""
        self.index.close()
