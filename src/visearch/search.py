"""SearchEngine: the one query path (CLI, REST and UI all call it).

category → live collection (alias) → the model version that produced its vectors → lazily
loaded, cached model → Qdrant query. A reindex or rollback changes the alias; the next query
follows it and loads the matching model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from visearch.categories import Registry
from visearch.data.images import decode_image
from visearch.data.transforms import eval_transform
from visearch.errors import InvalidQueryError, NotFoundError
from visearch.index import Hit, VectorIndex
from visearch.model import EmbeddingModel, load_model
from visearch.settings import Settings
from visearch.storage import ObjectStore

MODEL_FILES = ("trunk.pth", "embedder.pth", "meta.json")
CORE_FIELDS = ("file", "class", "label", "image_key", "image_uri")


@dataclass
class SearchResult:
    id: str
    score: float
    similarity: float
    cls: str
    file: str
    captions: dict[str, Any] = field(default_factory=dict)
    image_key: str = ""

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchResult:
        payload = hit.payload
        captions = {k: v for k, v in payload.items() if k not in CORE_FIELDS}
        return cls(hit.id, round(hit.score, 6), hit.similarity_percent, str(payload.get("class", "")),
                   str(payload.get("file", "")), captions, str(payload.get("image_key", "")))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "similarity": self.similarity, "class": self.cls,
                "file": self.file, "captions": self.captions}  # fmt: skip


class SearchEngine:
    """Answers queries for every category of the registry; models load on first use per category."""

    def __init__(self, settings: Settings, registry: Registry, store: ObjectStore, index: VectorIndex) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.index = index
        self._models: dict[tuple[str, str], EmbeddingModel] = {}
        self._lock = threading.Lock()

    # --- validation ------------------------------------------------------------------------
    def check_params(self, k: int, min_similarity: float) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise InvalidQueryError(f"k must be an integer from 1 to {self.settings.max_k}, got {k!r}")
        if not 0 <= min_similarity <= 100:
            raise InvalidQueryError(f"min_similarity must be a percentage from 0 to 100, got {min_similarity!r}")

    # --- models ----------------------------------------------------------------------------
    def model_for(self, category: str) -> EmbeddingModel:
        """The model whose vectors the live collection holds (loaded once, then cached)."""
        self.registry.get(category)
        live = self.index.require_live(category)
        key = (category, live.model_version)
        with self._lock:
            if key not in self._models:
                directory = self._fetch_model(category, live.model_version)
                self._models[key] = load_model(directory)
            return self._models[key]

    def _fetch_model(self, category: str, version: str) -> Path:
        cache = self.settings.home / "cache"
        paths = [self.store.local_path(f"models/{category}/{version}/{name}", cache) for name in MODEL_FILES]
        return paths[0].parent

    def embed_image(self, category: str, image: Image.Image) -> np.ndarray:
        model = self.model_for(category)
        tensor = eval_transform(model.spec.input_size, model.spec.normalize)(image).unsqueeze(0)
        with torch.inference_mode():
            return model(tensor)[0].numpy()

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
        self.check_params(k, min_similarity)
        vector = self.embed_image(category, image)
        hits = self.index.query(
            category, vector, k=k, min_score=min_similarity / 100 or None, class_filter=class_filter
        )
        return [SearchResult.from_hit(hit) for hit in hits]

    def search_bytes(self, category: str, data: bytes, **options: Any) -> list[SearchResult]:
        image = decode_image(data, max_bytes=self.settings.max_upload_bytes, max_pixels=self.settings.max_image_pixels)
        return self.search_image(category, image, **options)

    def search_id(
        self,
        category: str,
        point_id: str,
        *,
        k: int = 10,
        min_similarity: float = 0.0,
        class_filter: str | None = None,
    ) -> list[SearchResult]:
        """ "More like this": neighbours of a stored image (the image itself excluded)."""
        self.check_params(k, min_similarity)
        self.registry.get(category)
        self.index.require_live(category)
        _, vector = self.index.get(category, point_id, with_vector=True)
        if vector is None:
            raise NotFoundError(f"no vector stored for {point_id}")
        hits = self.index.query(category, vector, k=k, min_score=min_similarity / 100 or None,
                                class_filter=class_filter, exclude_id=point_id)  # fmt: skip
        return [SearchResult.from_hit(hit) for hit in hits]

    def image(self, category: str, point_id: str) -> tuple[bytes, dict[str, Any]]:
        """The stored image bytes of a point, with its payload."""
        self.registry.get(category)
        self.index.require_live(category)
        payload, _ = self.index.get(category, point_id)
        return self.store.get_bytes(str(payload["image_key"])), payload

    def examples(self, category: str, limit: int = 12) -> list[SearchResult]:
        """A few stored images of the category (for "pick an example" in the UI)."""
        self.registry.get(category)
        self.index.require_live(category)
        return [SearchResult.from_hit(Hit(pid, 1.0, payload)) for pid, payload in self.index.sample(category, limit)]
