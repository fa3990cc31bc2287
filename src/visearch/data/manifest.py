"""The manifest: a category's valid meta rows with ``key`` (the image's object key) and ``split``.

Preprocess writes it; every later step reads it. Its hash names the data of a collection version,
and its keys say where each image lies in the local cache of the object store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from visearch.data.meta import REQUIRED_COLUMNS, caption_columns
from visearch.errors import DataError, NotFoundError
from visearch.settings import Settings
from visearch.storage import ObjectStore

MANIFEST = "manifest.csv"
# Columns preprocess adds to the meta rows: the object key, the sha256 of the image bytes, the split.
MANIFEST_COLUMNS = ("key", "digest", "split")


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest CSV, with ``file``, ``class``, ``key`` and ``split`` read as text."""
    try:
        text_columns = {"file": str, "class": str, "key": str, "digest": str, "split": str}
        frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    except FileNotFoundError as exc:
        raise NotFoundError(f"no manifest at {path}; run preprocess first") from exc
    missing = [column for column in (*REQUIRED_COLUMNS, *MANIFEST_COLUMNS) if column not in frame.columns]
    if missing:
        raise DataError(f"{path} is not a visearch manifest (missing {missing}); run preprocess first")
    return frame


def sample_per_class(rows: pd.DataFrame, per_class: int | None, *, seed: int = 0) -> pd.DataFrame:
    """At most ``per_class`` rows of each ``label``, drawn at random (seeded), in their original order.

    The training and evaluation budgets (``TrainParams.train_images_per_class``,
    ``eval_images_per_class``): their time grows with the rows, so a large category trains and
    is scored on a sample while every image is still embedded and indexed. Smaller classes stay whole.
    """
    if per_class is None:
        return rows
    shuffled = rows.sample(frac=1, random_state=seed)
    return shuffled.groupby("label", sort=False).head(per_class).sort_index().reset_index(drop=True)


def load_manifest(manifest_dir: Path) -> pd.DataFrame:
    """The manifest of a preprocess output folder (or the CSV itself)."""
    return read_manifest(manifest_dir / MANIFEST if manifest_dir.is_dir() else manifest_dir)


def manifest_hash(manifest: pd.DataFrame) -> str:
    """Short hash of what gets indexed: rows, captions and each image's bytes (a replaced image counts)."""
    columns = ["key", "digest", "class", "label", *caption_columns(manifest.drop(columns=list(MANIFEST_COLUMNS)))]
    return hashlib.sha256(manifest[columns].to_csv(index=False).encode()).hexdigest()[:8]


def cache_dir(settings: Settings) -> Path:
    """Where images and models fetched from the object store are kept on this machine."""
    return settings.home / "cache"


def image_paths(store: ObjectStore, settings: Settings, keys: list[str]) -> list[Path]:
    """Local files of the images behind ``keys`` (fetched into the cache when the store is remote)."""
    return [store.local_path(key, cache_dir(settings)) for key in keys]
