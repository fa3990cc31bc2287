"""Write a category's images + meta CSV into the object store (the layout preprocess reads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from visearch.categories import Category
from visearch.data.checks import image_key
from visearch.data.meta import DataReport, check_rows, parse_meta, write_meta
from visearch.errors import DataError
from visearch.storage import ObjectStore

Row = tuple[str, str, int, bytes, Mapping[str, object]]


def write_category(
    store: ObjectStore,
    category: Category,
    rows: Iterable[Row],
    *,
    total: int | None = None,
    show_progress: bool = True,
) -> int:
    """Store each (file, class, label, image bytes, captions) and then the meta CSV; returns the count.

    The meta CSV is written last, so an interrupted run never leaves a CSV naming missing images.
    """
    records = []
    for file, cls, label, data, captions in tqdm(
        rows, total=total, desc=f"writing {category.name}", unit="img", disable=not show_progress
    ):
        store.put_bytes(image_key(category, file), data)
        records.append({"file": file, "class": cls, "label": int(label), **captions})
    if not records:
        raise DataError(f"no images to write for category {category.name!r}")
    store.put_bytes(f"{category.data_prefix}/{category.meta}", write_meta(pd.DataFrame(records)))
    return len(records)


def ingest_folder(
    store: ObjectStore,
    category: Category,
    source: Path,
    *,
    meta_name: str = "meta.csv",
    show_progress: bool = True,
) -> DataReport:
    """Copy a folder holding ``meta.csv`` and ``images/`` into the store; rows whose file is missing are reported."""
    meta_path = source / meta_name
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: a category folder needs {meta_name} and images/")
    report = DataReport()
    frame = check_rows(parse_meta(meta_path.read_bytes(), str(meta_path)), report)
    present = [(source / "images" / str(file)).is_file() for file in frame["file"]]
    for file, ok in zip(frame["file"], present, strict=True):
        if not ok:
            report.drop(str(file), f"missing image: no file images/{file}")
    frame = frame[present].reset_index(drop=True)
    captions = [column for column in frame.columns if column not in ("file", "class", "label")]
    rows = (
        (
            str(row["file"]),
            str(row["class"]),
            int(row["label"]),
            (source / "images" / str(row["file"])).read_bytes(),
            {column: row[column] for column in captions},
        )
        for _, row in frame.iterrows()
    )
    report.kept = write_category(store, category, rows, total=len(frame), show_progress=show_progress)
    return report
