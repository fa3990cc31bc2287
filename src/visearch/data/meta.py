"""The meta CSV contract (seed-compatible) and its validation report.

Format: an unnamed first index column, then ``file``, ``class``, ``label`` (int), then any
caption columns. Readers report every problem and keep only what is valid.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd

from visearch.errors import DataError

REQUIRED_COLUMNS = ("file", "class", "label")


@dataclass
class DataReport:
    """What validation found: rows kept, and every dropped file with its reason."""

    total: int = 0
    kept: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def drop(self, file: str, reason: str) -> None:
        self.dropped.append((file, reason))

    def summary(self) -> str:
        lines = [f"{self.kept} of {self.total} images kept, {len(self.dropped)} dropped"]
        lines += [f"  dropped {file}: {reason}" for file, reason in self.dropped[:20]]
        if len(self.dropped) > 20:
            lines.append(f"  ... and {len(self.dropped) - 20} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped": [{"file": file, "reason": reason} for file, reason in self.dropped],
        }


def caption_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column not in REQUIRED_COLUMNS]


def parse_meta(data: bytes, source: str = "meta.csv") -> pd.DataFrame:
    """Parse and check the columns of a meta CSV; raise DataError if it cannot be used at all."""
    if not data.strip():
        raise DataError(f"{source} is empty")
    try:
        frame = pd.read_csv(io.BytesIO(data), index_col=0, dtype={"file": str, "class": str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{source} is not a readable CSV: {exc}") from exc
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {', '.join(missing)} (needs file, class, label)")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any():
        bad = frame.loc[labels.isna(), "file"].head(3).tolist()
        raise DataError(f"{source}: column 'label' must hold integers (bad rows: {bad})")
    frame["label"] = labels.astype(int)
    frame = frame.reset_index(drop=True)
    return frame


def check_rows(frame: pd.DataFrame, report: DataReport) -> pd.DataFrame:
    """Drop rows with empty/duplicate files or a class whose label disagrees with the others."""
    report.total = len(frame)
    keep = pd.Series(True, index=frame.index)
    empty = frame["file"].isna() | (frame["file"].astype(str).str.strip() == "")
    for index in frame.index[empty]:
        report.drop(f"row {index}", "empty file name")
    keep &= ~empty
    duplicated = frame["file"].duplicated(keep="first") & keep
    for file in frame.loc[duplicated, "file"]:
        report.drop(str(file), "duplicate file entry")
    keep &= ~duplicated
    traversal = frame["file"].astype(str).str.contains(r"^/|\.\.", regex=True) & keep
    for file in frame.loc[traversal, "file"]:
        report.drop(str(file), "file path escapes the dataset folder")
    keep &= ~traversal
    # One class <-> one label: the majority label of a class wins, other rows are reported.
    majority = frame[keep].groupby("class")["label"].agg(lambda labels: labels.mode().iloc[0])
    mismatch = keep & (frame["label"] != frame["class"].map(majority))
    for file, cls, label in frame.loc[mismatch, ["file", "class", "label"]].itertuples(index=False):
        report.drop(str(file), f"label {label} disagrees with class {cls!r} (label {majority[cls]})")
    keep &= ~mismatch
    label_classes = frame[keep].groupby("label")["class"].nunique()
    shared = label_classes[label_classes > 1].index
    if len(shared):
        raise DataError(f"labels {sorted(shared.tolist())} are used by more than one class")
    return frame[keep].reset_index(drop=True)


def write_meta(frame: pd.DataFrame) -> bytes:
    """Serialise in the seed format: unnamed index column first, then file, class, label, captions."""
    ordered = frame[list(REQUIRED_COLUMNS) + caption_columns(frame)].reset_index(drop=True)
    return ordered.to_csv(index=True).encode("utf-8")
