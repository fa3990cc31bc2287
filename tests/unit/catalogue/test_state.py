"""The rows a write checks against (RowState, advanced record by record) are the view's rows (fast, no index).

A write checks its row against the category's rows; RowState keeps them across writes instead of
building the view per write. Whatever the records, it must hold exactly what the view holds.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest

from visearch.catalogue import ChangeRecord, catalogue_view
from visearch.catalogue.rows import _class_labels
from visearch.catalogue.state import RowState
from visearch.categories import Category

SHOP = Category(name="shop", title="Shop", data_dir="datasets/shop")
CLASSES = {"Bag": 0, "Boot": 1, "Shoe": 2, "Hat": 3}


def base_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "file": ["a.png", "b.png", "c.png", "d.png"],
            "class": ["Bag", "Bag", "Boot", "Hat"],
            "label": [0, 0, 1, 3],
            "note": ["x", None, "z", "w"],
        }
    )
    frame["key"] = [f"datasets/shop/images/{file}" for file in frame["file"]]
    return frame


def random_records(seed: int, count: int) -> list[ChangeRecord]:
    """Adds, replaces and removes over a few files, some of them base files, in a random order."""
    rng = random.Random(seed)
    files = [f"{c}.png" for c in "abcdefg"]
    records = []
    for seq in range(1, count + 1):
        op = rng.choice(["add", "replace", "remove"])
        cls = rng.choice(list(CLASSES))
        row: dict[str, Any] = {} if op == "remove" else {"class": cls, "label": CLASSES[cls]}
        if op != "remove" and rng.random() < 0.5:
            row["note"] = f"n{seq}"
        digest = rng.choice(["", f"d{seq}"]) if op != "remove" else ""
        key = f"objects/{seq}" if op != "remove" else ""
        records.append(ChangeRecord(seq, op, rng.choice(files), row, digest, key))  # type: ignore[arg-type]
    return records


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its missing values (a frame fills a column a row lacks with NaN or None)."""
    return {k: v for k, v in row.items() if not (v is None or (isinstance(v, float) and v != v))}


@pytest.mark.parametrize("seed", range(12))
def test_the_state_advanced_record_by_record_holds_the_view_s_rows(seed: int) -> None:
    base, records = base_frame(), random_records(seed, 30)
    state = RowState.build(base, records[:7])  # built at one position, then advanced in steps
    for upto in (7, 8, 15, 30):
        state.advance(records[:upto])  # records it already holds are skipped
        view = catalogue_view(base, records[:upto], SHOP)
        assert state.seq == upto
        assert {f: plain(r) for f, r in state.rows.items()} == {
            str(r["file"]): plain(r) for r in view.to_dict("records")
        }, (seed, upto)
        assert state.labels == _class_labels(view)
        assert state.counts == view["class"].value_counts().to_dict()
        assert set(view.columns) <= set(state.columns)


def test_labels_with_a_change_drop_an_emptied_class_and_take_a_new_one() -> None:
    state = RowState.build(base_frame(), [])
    assert state.labels_with([], [{"class": "Bag", "label": 0}]) is state.labels  # the usual add: no copy
    hat = {"class": "Hat", "label": 3}
    assert state.labels_with([hat], [{"class": "Shoe", "label": 2}]) == {"Bag": 0, "Boot": 1, "Shoe": 2}
    assert state.labels_with([hat], [hat]) == {"Bag": 0, "Boot": 1, "Hat": 3}  # moved back: still there
    bag = {"class": "Bag", "label": 0}
    assert state.labels_with([bag], []) == {"Bag": 0, "Boot": 1, "Hat": 3}  # one of two Bags: the class stays
    assert state.labels == {"Bag": 0, "Boot": 1, "Hat": 3}  # the state itself is never changed
