"""LogoDet-3K: ``<Category>/<Brand>/<n>.jpg`` + ``<n>.xml`` (Pascal VOC), several logo boxes per photo.

Every annotated box is cropped to its own image ``<Category>/<Brand>/<n>_<k>.jpg``;
class = brand (the folder name), caption = category (Food, Clothes, ...).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from visearch.data.adapters.common import (
    Candidate,
    annotated_boxes,
    box_loader,
    find_dir,
    read_rgb,
    require_dir,
    safe_file,
)
from visearch.data.meta import DataReport
from visearch.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def dataset_root(source: Path) -> Path:
    """``source`` or its ``LogoDet-3K`` folder: the folder whose grandchildren are brand folders."""
    require_dir(source, "LogoDet-3K source folder")
    root = find_dir(source, "LogoDet-3K", depth=1) or source
    while (root / "LogoDet-3K").is_dir():  # the Kaggle zip nests LogoDet-3K/LogoDet-3K/
        root = root / "LogoDet-3K"
    return root


def scan(source: Path, report: DataReport) -> list[Candidate]:
    """One candidate per annotated box, sorted by category, brand and photo."""
    root = dataset_root(source)
    read = lru_cache(maxsize=2)(read_rgb)  # every box of a photo decodes it once
    candidates: list[Candidate] = []
    brands = sorted(
        path for category in root.iterdir() if category.is_dir() for path in category.iterdir() if path.is_dir()
    )
    if not brands:
        raise DataError(f"{root} holds no <Category>/<Brand>/ folders (LogoDet-3K layout)")
    for brand_dir in brands:
        category, brand = brand_dir.parent.name, brand_dir.name
        for path in sorted(p for p in brand_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            relative = f"{category}/{brand}/{path.name}"
            for number, obj in enumerate(annotated_boxes(path.with_suffix(".xml"), relative, report)):
                file = safe_file(category, brand, f"{path.stem}_{number}") + ".jpg"
                captions = {"category": category, "brand": brand}
                load = box_loader(read, path, obj.box)
                candidates.append(Candidate(file, brand, captions, load, f"{relative} box {number}"))
    return candidates
