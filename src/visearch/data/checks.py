"""Data checks before training: the usable rows of a meta CSV (image exists, decodes, fits the rules), split by class.

The manifest is the meta CSV's valid rows plus ``key`` (object-store key of the image),
``digest`` (sha256 of its bytes) and ``split``: ``train`` / ``heldout`` (held-out images of
training classes, in-domain evaluation) / ``test`` (held-out classes, class-disjoint
evaluation) / ``validation`` and ``validation_class`` (the same two, for choosing the best epoch:
the final evaluation never sees them). Every valid image is indexed later, whatever its split. A bad row costs that row
(reported with its reason); the category is refused only when too little remains.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from visearch.categories import Category
from visearch.data.digests import DigestCache
from visearch.data.images import DEFAULT_MAX_PIXELS
from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DataError, NotFoundError
from visearch.settings import Settings
from visearch.storage import ObjectStore


@dataclass(frozen=True)
class DataRules:
    """What a category's data must meet; from the settings (``VISEARCH_MIN_*``)."""

    min_classes: int = 2
    min_images_per_class: int = 2
    min_image_side: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_settings(cls, settings: Settings) -> DataRules:
        """The rules the settings name."""
        return cls(
            settings.min_classes, settings.min_images_per_class, settings.min_image_side, settings.max_image_pixels
        )


@dataclass
class Validation:
    """The valid rows (with ``key`` and ``digest``), the report of the others, and each kept image's size."""

    frame: pd.DataFrame
    report: DataReport
    sizes: list[tuple[int, int]] = field(default_factory=list)


def image_key(category: Category, file: str) -> str:
    """Where a category's image lives in the object store."""
    return f"{category.data_prefix}/images/{file}"


def check_image(path: Path, rules: DataRules = DataRules()) -> tuple[str | None, tuple[int, int]]:
    """Why the image file is unusable (None when it decodes and fits the rules), and its size."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > rules.max_pixels:
                return f"image too large: {width}x{height} pixels (limit {rules.max_pixels})", (width, height)
            if min(width, height) < rules.min_image_side:
                return f"image too small: {width}x{height} pixels (sides >= {rules.min_image_side})", (width, height)
            image.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"unreadable image: {type(exc).__name__}: {exc}", (0, 0)
    return None, (width, height)


def validate_category(
    category: Category,
    store: ObjectStore,
    cache_dir: Path,
    *,
    rules: DataRules = DataRules(),
    show_progress: bool = True,
    changes: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Validation:
    """Read the category's meta CSV and keep the rows whose image exists, decodes and fits the rules.

    ``changes``: what users changed since (the living catalogue): it turns the checked meta rows
    into the rows to use, each with its image ``key``. With it, a category may have no meta CSV
    yet (every image arrived by an add).

    Raises:
        DataError: the meta CSV is missing or unusable as a whole, or too little remains to train
            and evaluate (the message names the threshold and what to add).
    """
    meta_key = f"{category.data_prefix}/{category.meta}"
    report = DataReport()
    try:
        frame = check_rows(parse_meta(store.get_bytes(meta_key), meta_key), report)
    except NotFoundError as exc:
        if changes is None:
            raise DataError(
                f"meta CSV not found for category {category.name!r}: {meta_key} "
                f"(visearch prepare folder --source DIR --category {category.name} puts a folder there)"
            ) from exc
        frame = pd.DataFrame({"file": [], "class": [], "label": []})
    if changes is not None:
        frame = changes(frame)
    if "key" not in frame.columns:
        frame["key"] = [image_key(category, str(file)) for file in frame["file"]]
    digests = DigestCache(cache_dir / "digests" / f"{category.name}.json")
    usable, found, sizes = [], [], []
    rows = list(zip(frame["key"], frame["file"], strict=True))
    for key, file in tqdm(rows, desc=f"checking {category.name} images", unit="img", disable=not show_progress):
        try:
            path = store.local_path(key, cache_dir)
        except NotFoundError:
            report.drop(str(file), f"missing image: no file images/{file}")
            usable.append(False)
            found.append("")
            continue
        problem, size = check_image(path, rules)
        if problem:
            report.drop(str(file), problem)
        usable.append(problem is None)
        found.append("" if problem else digests.digest(path))
        if problem is None:
            sizes.append(size)
    digests.save()
    frame["digest"] = found
    frame = frame[usable].reset_index(drop=True)
    frame, sizes = _drop_small_classes(frame, sizes, report, rules)
    report.kept = len(frame)
    classes = frame["class"].nunique()
    if classes < rules.min_classes:
        raise DataError(
            f"category {category.name!r} cannot be trained and evaluated: {classes} class(es) with at least "
            f"{rules.min_images_per_class} valid images remain, {rules.min_classes} needed (VISEARCH_MIN_CLASSES); "
            f"add images of more classes or fix the dropped rows\n{report.summary()}"
        )
    return Validation(frame, report, sizes)


def _drop_small_classes(
    frame: pd.DataFrame, sizes: list[tuple[int, int]], report: DataReport, rules: DataRules
) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    counts = frame["class"].value_counts()
    small = frame["class"].isin(counts[counts < rules.min_images_per_class].index)
    for file, cls in frame.loc[small, ["file", "class"]].itertuples(index=False):
        report.drop(
            str(file),
            f"class too small: {cls!r} has {counts[cls]} valid image(s), "
            f"{rules.min_images_per_class} needed (VISEARCH_MIN_IMAGES_PER_CLASS)",
        )
    kept_sizes = [size for size, drop in zip(sizes, small, strict=True) if not drop]
    return frame[~small].reset_index(drop=True), kept_sizes


VALIDATION = "validation"
VALIDATION_CLASS = "validation_class"


def held_out_count(images: int, holdout: float, min_images_per_class: int) -> int:
    """How many of a training class's ``images`` are held out: ``holdout`` of them, or none if too few would stay."""
    n_hold = int(images * holdout)
    return n_hold if images - n_hold >= min_images_per_class else 0


def smallest_class_held_out(holdout: float, min_images_per_class: int) -> int | None:
    """The fewest images a class needs to give some up for in-domain evaluation (None: ``holdout`` is 0)."""
    if holdout <= 0:
        return None
    return next(n for n in itertools.count(min_images_per_class) if held_out_count(n, holdout, min_images_per_class))


def validation_class_count(test_classes: int, validation: float) -> int:
    """How many held-out classes validate instead of testing: two at least, and two must stay for the test."""
    n_val = int(test_classes * validation)
    return n_val if n_val >= 2 and test_classes - n_val >= 2 else 0


def split_by_class(
    frame: pd.DataFrame,
    *,
    split: float,
    holdout: float,
    seed: int,
    min_images_per_class: int = 2,
    validation: float = 0.0,
) -> pd.DataFrame:
    """Assign train / heldout / test (+ validation): classes are split (class-disjoint), seeded and reproducible.

    A training class gives up ``holdout`` of its images for in-domain evaluation only if at least
    ``min_images_per_class`` stay for training: a class of two images is all training. With
    ``validation``, a training class also gives up that fraction of its images (``validation``) and
    the held-out classes that fraction of their classes (``validation_class``), each only if enough
    stay (:func:`validation_class_count`). The validation draws come after the others, so the test
    rows are the same with or without validation.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(frame["class"].unique())
    rng.shuffle(classes)
    n_train = min(len(classes) - 1, max(1, round(split * len(classes))))
    train_classes = set(classes[:n_train])
    result = frame.copy()
    result["split"] = np.where(result["class"].isin(train_classes), "train", "test")
    for _cls, rows in result[result["split"] == "train"].groupby("class"):
        n_hold = held_out_count(len(rows), holdout, min_images_per_class)
        if n_hold:
            held = rng.choice(rows.index.to_numpy(), size=n_hold, replace=False)
            result.loc[held, "split"] = "heldout"
    if validation > 0:
        _split_validation(result, rng, classes[n_train:], validation, min_images_per_class)
    return result


def _split_validation(
    result: pd.DataFrame, rng: np.random.Generator, test_classes: list[str], validation: float, min_images: int
) -> None:
    sizes = result["class"].value_counts()
    for cls, rows in result[result["split"] == "train"].groupby("class"):
        n_val = int(sizes[cls] * validation)
        if n_val and len(rows) - n_val >= min_images:
            chosen = rng.choice(rows.index.to_numpy(), size=n_val, replace=False)
            result.loc[chosen, "split"] = VALIDATION
    n_val_classes = validation_class_count(len(test_classes), validation)
    result.loc[result["class"].isin(test_classes[len(test_classes) - n_val_classes :]), "split"] = VALIDATION_CLASS
