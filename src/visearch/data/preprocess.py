"""Preprocess a category: validate meta CSV + images, then split by class into a manifest.

The manifest is the meta CSV's valid rows plus ``key`` (object-store key of the image) and
``split``: ``train`` / ``heldout`` (held-out images of training classes, in-domain evaluation)
/ ``test`` (held-out classes, class-disjoint evaluation). Every valid image is indexed later,
whatever its split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from visearch.categories import Category
from visearch.data.images import DEFAULT_MAX_PIXELS
from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DataError, NotFoundError
from visearch.storage import ObjectStore

MIN_IMAGES_PER_CLASS = 2


def image_key(category: Category, file: str) -> str:
    return f"{category.data_prefix}/images/{file}"


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Return why the image file is unusable, or None when it decodes."""
    try:
        with Image.open(path) as image:
            if image.size[0] * image.size[1] > max_pixels:
                return f"too large ({image.size[0]}x{image.size[1]} pixels)"
            image.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def validate_category(
    category: Category, store: ObjectStore, cache_dir: Path, *, show_progress: bool = True
) -> tuple[pd.DataFrame, DataReport]:
    """Read the category's meta CSV and keep rows whose image exists and decodes."""
    meta_key = f"{category.data_prefix}/{category.meta}"
    try:
        raw = store.get_bytes(meta_key)
    except NotFoundError as exc:
        raise DataError(f"meta CSV not found for category {category.name!r}: {meta_key}") from exc
    report = DataReport()
    frame = check_rows(parse_meta(raw, meta_key), report)
    frame["key"] = [image_key(category, str(file)) for file in frame["file"]]
    usable = []
    for key, file in tqdm(
        list(zip(frame["key"], frame["file"], strict=True)),
        desc=f"checking {category.name} images",
        unit="img",
        disable=not show_progress,
    ):
        try:
            path = store.local_path(key, cache_dir)
        except NotFoundError:
            report.drop(str(file), "image file missing")
            usable.append(False)
            continue
        problem = check_image(path)
        if problem:
            report.drop(str(file), problem)
        usable.append(problem is None)
    frame = frame[usable].reset_index(drop=True)
    counts = frame["class"].value_counts()
    small = counts[counts < MIN_IMAGES_PER_CLASS].index
    for file, cls in frame.loc[frame["class"].isin(small), ["file", "class"]].itertuples(index=False):
        report.drop(str(file), f"class {cls!r} has fewer than {MIN_IMAGES_PER_CLASS} valid images")
    frame = frame[~frame["class"].isin(small)].reset_index(drop=True)
    report.kept = len(frame)
    if frame["class"].nunique() < 2:
        raise DataError(
            f"category {category.name!r} has {frame['class'].nunique()} usable class(es) after "
            f"validation; at least 2 are needed\n{report.summary()}"
        )
    return frame, report


def split_by_class(frame: pd.DataFrame, *, split: float, holdout: float, seed: int) -> pd.DataFrame:
    """Assign train / heldout / test: classes are split (class-disjoint), seeded and reproducible."""
    rng = np.random.default_rng(seed)
    classes = sorted(frame["class"].unique())
    rng.shuffle(classes)
    n_train = min(len(classes) - 1, max(1, round(split * len(classes))))
    train_classes = set(classes[:n_train])
    result = frame.copy()
    result["split"] = np.where(result["class"].isin(train_classes), "train", "test")
    for _cls, rows in result[result["split"] == "train"].groupby("class"):
        n_hold = int(len(rows) * holdout)
        if n_hold and len(rows) - n_hold >= MIN_IMAGES_PER_CLASS:
            held = rng.choice(rows.index.to_numpy(), size=n_hold, replace=False)
            result.loc[held, "split"] = "heldout"
    return result
