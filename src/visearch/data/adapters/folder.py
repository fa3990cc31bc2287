"""A folder already in the category layout: ``meta.csv`` + ``images/`` (the seed's own format).

Rows are validated like every reader does (columns, duplicate files, label/class agreement);
images are decoded, checked and hashed like any dataset's, and keep their labels.
"""

from __future__ import annotations

from pathlib import Path

from visearch.data.adapters.common import Candidate, file_loader, require_dir
from visearch.data.meta import REQUIRED_COLUMNS, DataReport, check_rows, parse_meta
from visearch.errors import DataError


def scan(source: Path, report: DataReport, *, meta_name: str = "meta.csv") -> tuple[list[Candidate], dict[str, int]]:
    """Candidates for the valid meta rows, and the class → label map of the CSV."""
    require_dir(source, "category folder")
    meta_path = source / meta_name
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: a category folder needs {meta_name} and images/")
    rows = DataReport()
    frame = check_rows(parse_meta(meta_path.read_bytes(), str(meta_path)), rows)
    report.dropped.extend(rows.dropped)
    captions = [column for column in frame.columns if column not in REQUIRED_COLUMNS]
    candidates = [
        Candidate(
            str(row["file"]),
            str(row["class"]),
            {column: row[column] for column in captions},
            file_loader(source / "images" / str(row["file"]), keep_format=True),
            f"images/{row['file']}",
        )
        for _, row in frame.iterrows()
    ]
    labels = dict(zip(frame["class"].astype(str), frame["label"].astype(int), strict=True))
    return candidates, labels
