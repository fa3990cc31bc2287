"""The meta CSV contract (seed-compatible) and its validation report.

Format: an unnamed first index column, then ``file``, ``class``, ``label`` (int), then any
caption columns. A problem with the file as a whole (empty, not UTF-8, wrong delimiter, a missing
column) is one clear error; a problem with a row costs that row only, reported with its reason.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from visearch.errors import DataError

REQUIRED_COLUMNS = ("file", "class", "label")
SUMMARY_ROWS = 20


@dataclass
class DataReport:
    """What validation found: rows kept, and every dropped file with its reason.

    Reasons read ``"<kind>: <detail>"``; the kind (before the first colon) groups them in summaries.
    """

    total: int = 0
    kept: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def drop(self, file: str, reason: str) -> None:
        """Record that ``file`` was dropped and why."""
        self.dropped.append((file, reason))

    def reasons(self) -> Counter[str]:
        """Dropped files per kind of reason (the text before the first colon)."""
        return Counter(reason.split(":", 1)[0] for _, reason in self.dropped)

    def summary(self) -> str:
        """Kept and dropped counts, a line per kind of reason, then the first dropped files."""
        lines = [f"{self.kept} of {self.total} images kept, {len(self.dropped)} dropped"]
        lines += [f"  {count:>6}  {kind}" for kind, count in self.reasons().most_common()]
        lines += [f"  dropped {file}: {reason}" for file, reason in self.dropped[:SUMMARY_ROWS]]
        if len(self.dropped) > SUMMARY_ROWS:
            lines.append(f"  ... and {len(self.dropped) - SUMMARY_ROWS} more (the JSON report lists all)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: counts, reasons per kind, every dropped file."""
        return {
            "total": self.total,
            "kept": self.kept,
            "reasons": dict(self.reasons()),
            "dropped": [{"file": file, "reason": reason} for file, reason in self.dropped],
        }


def caption_columns(frame: pd.DataFrame) -> list[str]:
    """The columns after ``file``, ``class`` and ``label``: captions, kept as point payload."""
    return [column for column in frame.columns if column not in REQUIRED_COLUMNS]


def parse_meta(data: bytes, source: str = "meta.csv") -> pd.DataFrame:
    """Parse a meta CSV and check its header; raise DataError (one line, with the fix) if it cannot be used.

    Rows are not judged here: :func:`check_rows` drops the bad ones.
    """
    if not data.strip():
        raise DataError(f"{source} is empty: it needs a header row (,file,class,label) and one row per image")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source} is not UTF-8 text (byte {exc.start}): save it as UTF-8 CSV") from exc
    try:
        # Captions keep pandas' type inference (numbers stay numbers in the payload).
        frame = pd.read_csv(io.StringIO(text), index_col=0, dtype={column: str for column in REQUIRED_COLUMNS})
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{source} is not a readable CSV: {exc}") from exc
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {', '.join(missing)}{_delimiter_hint(text)}")
    for column in REQUIRED_COLUMNS:  # an empty cell is "", never the text "nan"
        frame[column] = frame[column].fillna("")
    return frame.reset_index(drop=True)


def _delimiter_hint(text: str) -> str:
    """What to fix when the header has no ``file``/``class``/``label``: usually the delimiter."""
    header = text.splitlines()[0] if text.splitlines() else ""
    try:
        delimiter = csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
    except csv.Error:
        delimiter = ""
    if delimiter and all(column in header for column in REQUIRED_COLUMNS):
        shown = "tab" if delimiter == "\t" else repr(delimiter)
        return f": the header is separated by {shown}; save the file with commas"
    return " (the header must name file, class and label, after an unnamed index column)"


def check_rows(frame: pd.DataFrame, report: DataReport) -> pd.DataFrame:
    """Keep the rows that can be used; report every other row with its reason.

    Dropped: an empty file name, an empty class, a label that is no integer, a path outside the
    dataset folder, a second row for a file, a label that disagrees with its class's majority
    label, and a class whose label another (larger) class already uses.
    """
    report.total = len(frame)
    frame = frame.copy()
    frame["file"] = frame["file"].astype(str).str.strip()
    frame["class"] = frame["class"].astype(str).str.strip()
    labels = pd.to_numeric(frame["label"].astype(str).str.strip(), errors="coerce")
    rules = [
        (frame["file"] == "", lambda row: "empty file name: the row names no image", "row"),
        (frame["class"] == "", lambda row: "empty class: the row has no class", "file"),
        (
            labels.isna() | (labels % 1 != 0),
            lambda row: f"bad label: {row['label']!r} is not an integer",
            "file",
        ),
        (
            frame["file"].str.contains(r"^/|\\|\.\.", regex=True),
            lambda row: "path outside the folder: file names stay under images/",
            "file",
        ),
    ]
    keep = pd.Series(True, index=frame.index)
    for bad, reason, name in rules:
        for index in frame.index[bad & keep]:
            row = frame.loc[index]
            report.drop(f"row {index}" if name == "row" else str(row["file"]), reason(row))
        keep &= ~bad
    duplicated = frame["file"].where(keep).duplicated(keep="first") & keep
    for file in frame.loc[duplicated, "file"]:
        report.drop(str(file), "duplicate file: an earlier row names the same file")
    keep &= ~duplicated
    frame["label"] = labels.fillna(-1).astype(int)
    # One class <-> one label: the majority label of a class wins, other rows are reported.
    majority = frame[keep].groupby("class")["label"].agg(lambda values: values.mode().iloc[0])
    mismatch = keep & (frame["label"] != frame["class"].map(majority))
    for file, cls, label in frame.loc[mismatch, ["file", "class", "label"]].itertuples(index=False):
        report.drop(str(file), f"label mismatch: label {label} but class {cls!r} has label {majority[cls]}")
    keep &= ~mismatch
    # A label shared by two classes: the class with more rows keeps it, the other is dropped.
    sizes = frame[keep].groupby("class").size()
    owner: dict[int, str] = {}
    for cls in sorted(sizes.index, key=lambda name: (-sizes[name], name)):
        owner.setdefault(int(majority[cls]), cls)
    shared = keep & (frame["class"] != frame["label"].map(owner))
    for file, cls, label in frame.loc[shared, ["file", "class", "label"]].itertuples(index=False):
        report.drop(str(file), f"label shared: label {label} of class {cls!r} belongs to class {owner[label]!r}")
    keep &= ~shared
    return frame[keep].reset_index(drop=True)


def write_meta(frame: pd.DataFrame) -> bytes:
    """Serialise in the seed format: unnamed index column first, then file, class, label, captions."""
    ordered = frame[list(REQUIRED_COLUMNS) + caption_columns(frame)].reset_index(drop=True)
    return ordered.to_csv(index=True).encode("utf-8")
