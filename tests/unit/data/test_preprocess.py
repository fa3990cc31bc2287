"""Preprocessing a category: missing and corrupt images dropped with a reason, the class-disjoint split."""

from __future__ import annotations

import pandas as pd

from visearch.data.meta import parse_meta
from visearch.data.preprocess import split_by_class, validate_category


def test_validate_category_drops_missing_and_corrupt_images(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    category = registry.get("tiny")
    meta = parse_meta(store.get_bytes(f"{category.data_prefix}/meta.csv"))
    first, second = meta["file"].iloc[0], meta["file"].iloc[1]
    store.put_bytes(f"{category.data_prefix}/images/{first}", b"\xff\xd8\xff\xe0 not really a jpeg")
    (home.objects_dir / category.data_prefix / "images" / second).unlink()
    found = validate_category(category, store, home.home / "cache", show_progress=False)
    reasons = dict(found.report.dropped)
    assert reasons[first].startswith("unreadable image: ")
    assert reasons[second] == f"missing image: no file images/{second}"
    assert len(found.frame) == len(meta) - 2 == found.report.kept == len(found.sizes)
    assert found.frame["digest"].str.fullmatch("[0-9a-f]{64}").all()


def test_split_is_class_disjoint_seeded_and_holds_out_images() -> None:
    frame = pd.DataFrame(
        {
            "file": [f"{c}{i}" for c in "abcdefghij" for i in range(10)],
            "class": [c for c in "abcdefghij" for _ in range(10)],
            "label": 0,
        }
    )
    first = split_by_class(frame, split=0.6, holdout=0.2, seed=3)
    again = split_by_class(frame, split=0.6, holdout=0.2, seed=3)
    assert first["split"].tolist() == again["split"].tolist()
    test_classes = set(first.loc[first["split"] == "test", "class"])
    train_classes = set(first.loc[first["split"] != "test", "class"])
    assert len(train_classes) == 6 and len(test_classes) == 4 and not test_classes & train_classes
    assert (first.groupby("class")["split"].apply(lambda s: (s == "heldout").sum()).loc[list(train_classes)] == 2).all()
