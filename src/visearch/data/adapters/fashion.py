"""Kaggle Fashion Product Images: ``images/<id>.jpg`` + ``styles.csv`` (full or "small" variant).

Class = articleType; captions = gender, colour, season, usage, product name. A few lines of
the shipped styles.csv hold unquoted commas in the product name: the extra fields are joined
back into the name (the last column) rather than dropping the product.
"""

from __future__ import annotations

import csv
from pathlib import Path

from visearch.data.adapters.common import Candidate, file_loader, find_dir, require_dir
from visearch.data.meta import DataReport
from visearch.errors import DataError

REQUIRED = ("id", "articleType")
CAPTIONS = {
    "gender": "gender",
    "baseColour": "colour",
    "season": "season",
    "usage": "usage",
    "productDisplayName": "name",
}


def locate(source: Path) -> tuple[Path, Path]:
    """The ``images`` folder and ``styles.csv`` (at ``source`` or one level down, as the zips nest)."""
    require_dir(source, "fashion product images source folder")
    images = find_dir(source, "images", depth=1)
    if images is None:
        raise DataError(f"{source} has no images/ folder (layout: images/<id>.jpg + styles.csv)")
    styles = images.parent / "styles.csv"
    if not styles.is_file():
        raise DataError(f"metadata file styles.csv not found next to {images}")
    return images, styles


def read_styles(path: Path, report: DataReport) -> list[dict[str, str]]:
    """Rows of styles.csv as dicts; lines too short to hold every column are reported."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = [column.strip() for column in next(reader, [])]
        missing = [column for column in REQUIRED if column not in header]
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(missing)}")
        rows = []
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) < len(header):
                report.drop(
                    f"styles.csv line {line}", f"malformed styles.csv line: {len(fields)} of {len(header)} fields"
                )
                continue
            # Unquoted commas only occur in the last column (productDisplayName): join them back.
            fields = [*fields[: len(header) - 1], ",".join(fields[len(header) - 1 :])]
            rows.append(dict(zip(header, (field.strip() for field in fields), strict=True)))
    return rows


def scan(source: Path, report: DataReport) -> list[Candidate]:
    """One candidate per styles.csv row with an article type, sorted by class then id."""
    images, styles = locate(source)
    candidates = []
    for row in read_styles(styles, report):
        product_id, article = row["id"], row["articleType"]
        if not product_id.isdigit():
            report.drop(f"styles.csv id {product_id!r}", "bad id: not a number")
            continue
        if not article:
            report.drop(f"{product_id}.jpg", "no article type in styles.csv")
            continue
        captions = {caption: row.get(column, "") for column, caption in CAPTIONS.items()}
        path = images / f"{product_id}.jpg"
        candidates.append(
            Candidate(f"{product_id}.jpg", article, captions, file_loader(path), f"images/{product_id}.jpg")
        )
    candidates.sort(key=lambda candidate: (candidate.cls, int(candidate.file.split(".")[0])))
    return candidates
