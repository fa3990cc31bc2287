"""Preprocessing a category: missing and corrupt images dropped with a reason, the class-disjoint split."""

from __future__ import annotations

import pandas as pd

from visearch.data.checks import split_by_class, validate_category
from visearch.data.meta import parse_meta
from visearch.data.summary import evaluation_plan


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


def classes_frame(classes: str, per_class: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file": [f"{c}{i}" for c in classes for i in range(per_class)],
            "class": [c for c in classes for _ in range(per_class)],
            "label": [classes.index(c) for c in classes for _ in range(per_class)],
        }
    )


def test_validation_rows_come_from_training_images_and_spare_classes_never_from_the_test() -> None:
    frame = classes_frame("abcdefghijklmnopqrst", 10)
    plain = split_by_class(frame, split=0.6, holdout=0.2, seed=3)
    validated = split_by_class(frame, split=0.6, holdout=0.2, seed=3, validation=0.25)
    # The final evaluation's rows are the same with or without validation: only test rows and
    # heldout rows it keeps; validation takes training images (in-domain) and test classes.
    assert validated.index[validated["split"] == "heldout"].equals(plain.index[plain["split"] == "heldout"])
    counts = validated.groupby("split")["class"].nunique()
    assert (counts["validation_class"], counts["test"]) == (2, 6)  # 0.25 of the 8 held-out classes
    per_class = validated[validated["split"] == "validation"].groupby("class").size()
    assert len(per_class) == 12 and (per_class == 2).all()
    moved = validated["split"] != plain["split"]
    assert set(plain.loc[moved, "split"]) == {"train", "test"}

    plan = evaluation_plan(validated, holdout=0.2, min_images_per_class=2, validation=0.25)
    assert plan.validation_line() == "validation: in-domain + held-out classes (best epoch kept, early stopping)"


def test_small_categories_validate_what_they_can_and_say_why() -> None:
    # Fashion-MNIST's shape: 10 classes, 4 held out; 0.1 of 4 is no class to spare.
    manifest = split_by_class(classes_frame("abcdefghij", 100), split=0.6, holdout=0.2, seed=0, validation=0.1)
    assert set(manifest["split"]) == {"train", "heldout", "validation", "test"}
    plan = evaluation_plan(manifest, holdout=0.2, min_images_per_class=2, validation=0.1)
    assert (plan.validation_in_domain, plan.validation_classes) == (True, False)
    assert "no held-out classes: 0.1 of 4 held-out class(es)" in plan.validation_line()
    # Two images a class: nothing to spare anywhere, so training runs every epoch.
    tiny = split_by_class(classes_frame("abcdef", 2), split=0.5, holdout=0.2, seed=0, validation=0.1)
    plan = evaluation_plan(tiny, holdout=0.2, min_images_per_class=2, validation=0.1)
    assert not set(tiny["split"]) & {"validation", "validation_class"}
    assert plan.validation_line().startswith("validation: none (no in-domain: the largest training class has 2")
    assert plan.validation_line().endswith("training runs all epochs)")
