"""The category's rows as plain dicts, kept across writes and advanced record by record.

A write checks its row against the rows now (the file's row, each class's label, the columns).
Building that as :func:`visearch.catalogue.view.catalogue_view` does (a pandas frame of every
row) cost ~30 ms per write at 70,000 rows, more than the forward of the image; :class:`RowState`
is built once per process and each later record costs a dict update. It holds what the view
holds: a file's row is its base row overlaid by its last record's values, and gone after a remove.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from visearch.catalogue.log import ChangeRecord

Row = dict[str, Any]


def record_values(record: ChangeRecord) -> Row:
    """What an add or replace record sets on its file's row (the view's rule: digest only when known)."""
    values: Row = {**record.row, "file": record.file, "key": record.key}
    if record.digest:
        values["digest"] = record.digest
    return values


@dataclass
class RowState:
    """The rows of a category at log position ``seq``: file -> row, class counts and labels, columns.

    ``base`` is the frame it was built from (the parsed meta CSV): a different frame means a new
    CSV and a rebuild.
    """

    base: pd.DataFrame
    base_rows: dict[str, Row]
    rows: dict[str, Row]
    counts: Counter[str] = field(default_factory=Counter)
    labels: dict[str, int] = field(default_factory=dict)  # class -> label, for classes with rows
    columns: dict[str, None] = field(default_factory=dict)  # ordered set: the view's columns
    seq: int = 0

    @classmethod
    def build(cls, base: pd.DataFrame, records: Iterable[ChangeRecord]) -> RowState:
        """The state of ``base`` with ``records`` applied in order."""
        rows = {str(row["file"]): row for row in base.to_dict("records")}
        state = cls(base, rows, dict(rows), columns=dict.fromkeys([*map(str, base.columns), "key"]))
        for row in rows.values():
            state._count(row, 1)
        state.advance(records)
        return state

    def advance(self, records: Iterable[ChangeRecord]) -> None:
        """Apply the records after ``seq`` (older ones are skipped: the state holds them already)."""
        for record in records:
            if record.seq <= self.seq:
                continue
            old = self.rows.pop(record.file, None)
            if old is not None:
                self._count(old, -1)
            if record.op != "remove":
                row = {**self.base_rows.get(record.file, {}), **record_values(record)}
                self.rows[record.file] = row
                self._count(row, 1)
                self.columns.update(dict.fromkeys(row))
            self.seq = record.seq

    def _count(self, row: Mapping[str, Any], step: int) -> None:
        cls = str(row["class"])
        self.counts[cls] += step
        if self.counts[cls] <= 0:
            del self.counts[cls]
            self.labels.pop(cls, None)
        elif step > 0:
            self.labels.setdefault(cls, int(row["label"]))

    def labels_with(self, removed: Sequence[Mapping[str, Any]], added: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Each class's label once the ``removed`` rows are gone and the ``added`` ones in.

        Costs the size of the change, not of the category, when no class empties (the usual add).
        """
        emptied: Counter[str] = Counter()
        for row in removed:
            emptied[str(row["class"])] += 1
        for row in added:
            emptied[str(row["class"])] -= 1
        gone = [cls for cls, count in emptied.items() if count > 0 and self.counts.get(cls, 0) - count <= 0]
        new = [row for row in added if str(row["class"]) not in self.labels]
        if not gone and not new:
            return self.labels
        labels = {cls: label for cls, label in self.labels.items() if cls not in gone}
        for row in new:
            labels.setdefault(str(row["class"]), int(row["label"]))
        return labels


__all__ = ["RowState", "record_values"]
