"""UT Zappos50K: ``ut-zap50k-images-square/<Category>/<SubCategory>/<Brand>/<CID>.jpg``.

Class = ``<Category> - <SubCategory>`` (21 functional types); captions = category, sub-category,
brand, and, when ``ut-zap50k-data/meta-data.csv`` is present, its gender/material/closure columns.
"""

from __future__ import annotations

import csv
from pathlib import Path

from visearch.data.adapters.common import Candidate, file_loader, find_dir, require_dir, safe_file
from visearch.data.meta import DataReport
from visearch.errors import DataError

IMAGE_FOLDERS = ("ut-zap50k-images-square", "ut-zap50k-images")
TOP_CATEGORIES = ("Boots", "Sandals", "Shoes", "Slippers")
META_COLUMNS = {"Gender": "gender", "Material": "material", "Closure": "closure", "HeelHeight": "heel_height"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def images_root(source: Path) -> Path:
    """The folder holding Boots/Sandals/Shoes/Slippers: ``source`` itself or one of the shipped folders."""
    require_dir(source, "UT Zappos50K source folder")
    if any((source / name).is_dir() for name in TOP_CATEGORIES):
        return source
    for name in IMAGE_FOLDERS:
        found = find_dir(source, name)
        if found is not None:
            return found
    raise DataError(f"{source} holds neither {' nor '.join(IMAGE_FOLDERS)} nor Boots/Sandals/Shoes/Slippers folders")


def read_metadata(source: Path) -> dict[str, dict[str, str]]:
    """Optional ``ut-zap50k-data/meta-data.csv`` keyed by CID (``7965307-5291``); empty when absent."""
    folder = find_dir(source, "ut-zap50k-data")
    path = folder / "meta-data.csv" if folder else None
    if path is None or not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return {row["CID"].strip(): row for row in csv.DictReader(handle) if row.get("CID")}


def scan(source: Path, report: DataReport) -> list[Candidate]:
    """Every image under the category folders, sorted by path; stray files are reported."""
    root = images_root(source)
    metadata = read_metadata(source if source != root else source.parent)
    candidates = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root)
        if len(relative.parts) != 4 or path.suffix.lower() not in IMAGE_SUFFIXES:
            report.drop(str(relative), "not in the layout: expected Category/SubCategory/Brand/<id>.jpg")
            continue
        category, sub, brand, _ = relative.parts
        captions: dict[str, object] = {"category": category, "subcategory": sub, "brand": brand}
        if metadata:  # the same columns for every row, so the meta CSV stays rectangular
            row = metadata.get(path.stem.replace(".", "-"), {})
            captions |= {caption: row.get(column, "") for column, caption in META_COLUMNS.items()}
        file = safe_file(category, sub, brand, path.stem) + ".jpg"
        candidates.append(Candidate(file, f"{category} - {sub}", captions, file_loader(path), str(relative)))
    return candidates
