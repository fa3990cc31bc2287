"""The catalogue view: the rows a pipeline run sees = base meta rows + the change log (fast, no index).

What ``visearch preprocess`` trains and indexes on after adds, replaces and removes, what the
refresh policy counts as changed since training, and the data version a run reports.
"""

from __future__ import annotations

import pandas as pd

from visearch.catalogue import ChangeRecord, catalogue_view, change_counts, data_version, net_changes
from visearch.categories import Category

SHOP = Category(name="shop", title="Shop", data_dir="datasets/shop")
BASE = pd.DataFrame(
    {"file": ["a.png", "b.png", "c.png"], "class": ["Bag", "Bag", "Boot"], "label": [0, 0, 1], "note": ["x", "y", "z"]}
)


def add(seq: int, file: str, cls: str = "Bag", label: int = 0, **more: object) -> ChangeRecord:
    return ChangeRecord(seq, "add", file, {"class": cls, "label": label, **more}, f"d{seq}", f"objects/{seq}")


def replace(seq: int, file: str, cls: str, label: int, **more: object) -> ChangeRecord:
    return ChangeRecord(seq, "replace", file, {"class": cls, "label": label, **more}, f"d{seq}", f"objects/{seq}")


def remove(seq: int, file: str) -> ChangeRecord:
    return ChangeRecord(seq, "remove", file)


def rows(view: pd.DataFrame, *columns: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in view[list(columns)].itertuples(index=False)]


def test_without_changes_the_view_is_the_base_with_image_keys() -> None:
    view = catalogue_view(BASE, [], SHOP)
    assert rows(view, "file", "class", "label", "key") == [
        ("a.png", "Bag", 0, "datasets/shop/images/a.png"),
        ("b.png", "Bag", 0, "datasets/shop/images/b.png"),
        ("c.png", "Boot", 1, "datasets/shop/images/c.png"),
    ]
    assert list(view.index) == [0, 1, 2]
    assert list(BASE.columns) == ["file", "class", "label", "note"]  # the base is not changed


def test_adds_come_last_in_log_order_replaces_keep_their_place_removes_are_gone() -> None:
    records = [
        add(5, "e.png", "Shoe", 2),
        remove(3, "b.png"),
        replace(4, "a.png", "Boot", 1, note="new"),
        add(2, "d.png"),
    ]
    view = catalogue_view(BASE, records, SHOP)
    assert rows(view, "file", "class", "label", "key", "digest") == [
        ("a.png", "Boot", 1, "objects/4", "d4"),
        ("c.png", "Boot", 1, "datasets/shop/images/c.png", None),
        ("d.png", "Bag", 0, "objects/2", "d2"),
        ("e.png", "Shoe", 2, "objects/5", "d5"),
    ]
    assert view.loc[0, "note"] == "new" and view.loc[1, "note"] == "z"
    assert view["label"].dtype == int and list(view.index) == [0, 1, 2, 3]


def test_a_replace_may_bring_a_column_the_base_lacks() -> None:
    view = catalogue_view(BASE, [replace(1, "c.png", "Boot", 1, colour="red")], SHOP)
    assert rows(view, "file", "colour") == [("a.png", None), ("b.png", None), ("c.png", "red")]


def test_base_keys_are_kept_and_a_removed_then_added_base_file_keeps_its_place() -> None:
    keyed = BASE.assign(key=["k/a", "k/b", "k/c"])
    view = catalogue_view(keyed, [remove(1, "a.png"), add(2, "a.png", "Shoe", 2)], SHOP)
    assert rows(view, "file", "class", "key") == [
        ("a.png", "Shoe", "objects/2"),  # the removal was superseded: a replace in place
        ("b.png", "Bag", "k/b"),
        ("c.png", "Boot", "k/c"),
    ]
    # The other order: the removal is the last word.
    assert list(catalogue_view(keyed, [add(1, "z.png"), remove(2, "z.png")], SHOP)["file"]) == [
        "a.png",
        "b.png",
        "c.png",
    ]


def test_a_record_without_a_digest_keeps_the_digest_column_out() -> None:
    record = ChangeRecord(1, "replace", "a.png", {"class": "Bag", "label": 0}, "", "objects/1")
    view = catalogue_view(BASE, [record], SHOP)
    assert "digest" not in view.columns and view.loc[0, "key"] == "objects/1"


def test_net_changes_keep_the_last_record_per_file_in_the_order_files_last_changed() -> None:
    records = [add(1, "a.png"), add(2, "b.png"), replace(3, "a.png", "Boot", 1), remove(4, "c.png")]
    net = net_changes(reversed(records))  # the log's order is its sequence numbers, not the list's
    assert [(file, r.seq, r.op) for file, r in net.items()] == [
        ("b.png", 2, "add"),
        ("a.png", 3, "replace"),
        ("c.png", 4, "remove"),
    ]


def test_change_counts_count_each_file_once() -> None:
    records = [add(1, "a.png"), replace(2, "a.png", "Bag", 0), add(3, "b.png"), remove(4, "c.png"), remove(5, "d.png")]
    assert change_counts(records) == {"add": 1, "replace": 1, "remove": 2}
    assert change_counts([]) == {"add": 0, "replace": 0, "remove": 0}


def test_the_data_version_changes_with_the_rows_and_the_log_position() -> None:
    version = data_version("abc", 7)
    assert len(version) == 8 and int(version, 16) >= 0
    assert version == data_version("abc", 7)
    assert len({version, data_version("abc", 8), data_version("abd", 7)}) == 3
