"""The catalogue view: base meta rows + the change log up to a position = the rows a run should see."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

import pandas as pd

from visearch.catalogue.log import ChangeRecord
from visearch.categories import Category
from visearch.data.checks import image_key


def net_changes(records: Iterable[ChangeRecord]) -> dict[str, ChangeRecord]:
    """The last record per file, in the order files were last changed: what replaying them must leave.

    Applying only these is what makes a replay safe to repeat and keeps a removal removed: an older
    add of the same file never comes after its removal.
    """
    net: dict[str, ChangeRecord] = {}
    for record in sorted(records, key=lambda r: r.seq):
        net.pop(record.file, None)
        net[record.file] = record
    return net


def catalogue_view(base: pd.DataFrame, records: Iterable[ChangeRecord], category: Category) -> pd.DataFrame:
    """``base`` (meta rows: file, class, label, captions) with the records applied, and a ``key`` per row.

    Added rows come last in log order; a replaced row keeps its place with its new values (and its
    new image key when the bytes changed); removed rows are gone. Base rows without a ``key`` get
    the usual ``images/<file>`` key; rows from the log carry their image's content key and
    ``digest``.
    """
    frame = base.copy().reset_index(drop=True)
    if "key" not in frame.columns:
        frame["key"] = [image_key(category, str(file)) for file in frame["file"]]
    frame = frame.set_index(frame["file"].astype(str), drop=False)
    added: list[dict[str, object]] = []
    for file, record in net_changes(records).items():
        if record.op == "remove":
            frame = frame.drop(index=file, errors="ignore")
            continue
        values: dict[str, object] = {**record.row, "file": file, "key": record.key}
        if record.digest:
            values["digest"] = record.digest
        if file in frame.index:
            for column, value in values.items():
                if column not in frame.columns:
                    frame[column] = None
                elif frame[column].dtype != object:
                    # pandas 3 reads text columns as a strict str dtype: a replaced row's int label
                    # (or a number in a text caption) would raise; the final astype below restores label.
                    frame[column] = frame[column].astype(object)
                frame.at[file, column] = value
        else:
            added.append(values)
    view = pd.concat([frame, pd.DataFrame(added)], ignore_index=True) if added else frame.reset_index(drop=True)
    view["label"] = view["label"].astype(int)
    return view


def data_version(rows_hash: str, seq: int) -> str:
    """The data version of a view: the hash of its rows and the log position it was read at (8 hex digits)."""
    return hashlib.sha256(f"{rows_hash}:{seq}".encode()).hexdigest()[:8]


def change_counts(records: Iterable[ChangeRecord]) -> dict[str, int]:
    """How many images were added, replaced and removed by ``records`` (net per file), e.g. since training."""
    counts = Counter(record.op for record in net_changes(records).values())
    return {op: counts.get(op, 0) for op in ("add", "replace", "remove")}
