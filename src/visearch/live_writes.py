"""The living catalogue wired to the models that serve it: what the service, the CLI and the upsert stage open.

A catalogue write embeds its image with the model of the index version it writes to (the live
one, or the version a pipeline run is about to swap in); ``SearchEngine`` already loads and caches
that model by version, so the writes use its models rather than loading their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visearch.catalogue import Catalogue, Embed
from visearch.data.images import decode_image
from visearch.index import CollectionVersion
from visearch.search import SearchEngine


def engine_embed(engine: SearchEngine, category: str) -> Embed:
    """Embed image bytes with the model of a given index version of ``category`` (decoded at the model's scale)."""

    def embed(version: CollectionVersion, datas: Sequence[bytes]) -> np.ndarray:
        if not datas:
            return np.zeros((0, 0), np.float32)
        side = engine.query_side(category, version)
        settings = engine.settings
        images = [
            decode_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, min_side=side)
            for data in datas
        ]
        return engine.embed_images(category, images, live=version)

    return embed


def open_catalogue(engine: SearchEngine, category: str) -> Catalogue:
    """The catalogue of a registry category, writing through the engine's index with the engine's models.

    Raises:
        UnknownCategoryError: the registry has no such category.
    """
    settings = engine.settings
    return Catalogue(
        engine.store,
        engine.index,
        engine.registry.get(category),
        engine_embed(engine, category),
        settings.home / "locks",
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
    )
