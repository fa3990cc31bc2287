"""Writing a category into the object store: every image, then the meta CSV (last), bad rows reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY, copy_tiny_dataset
from visearch.categories import Category, Registry
from visearch.data.checks import image_key
from visearch.data.ingest import Row, ingest_folder, write_category
from visearch.data.meta import parse_meta
from visearch.errors import DataError
from visearch.storage import LocalStore


@pytest.fixture
def category(registry: Registry) -> Category:
    return registry.get(TINY)


@pytest.fixture
def target(tmp_path: Path) -> LocalStore:
    """An empty object store (the home's own store already holds the tiny dataset)."""
    return LocalStore(tmp_path / "target")


def stored_meta(store: LocalStore, category: Category) -> pd.DataFrame:
    return parse_meta(store.get_bytes(f"{category.data_prefix}/{category.meta}"))


def test_a_folder_is_copied_image_by_image_with_its_captions(
    tmp_path: Path, category: Category, target: LocalStore
) -> None:
    source = tmp_path / "source"
    count = copy_tiny_dataset(source)
    report = ingest_folder(target, category, source, show_progress=False)
    assert (report.total, report.kept, report.dropped) == (count, count, [])
    given = parse_meta((source / "meta.csv").read_bytes())
    for file in given["file"]:
        assert target.get_bytes(image_key(category, file)) == (source / "images" / file).read_bytes()
    assert sorted(target.list(f"{category.data_prefix}/images")) == sorted(
        image_key(category, file) for file in given["file"]
    )
    stored = stored_meta(target, category)
    assert list(stored.columns) == list(given.columns)  # file, class, label, then the captions
    pd.testing.assert_frame_equal(stored, given)


def test_rows_without_an_image_are_reported_and_left_out(
    tmp_path: Path, category: Category, target: LocalStore
) -> None:
    source = tmp_path / "source"
    count = copy_tiny_dataset(source)
    given = parse_meta((source / "meta.csv").read_bytes())
    missing = str(given["file"].iloc[3])
    (source / "images" / missing).unlink()
    with (source / "meta.csv").open("a", encoding="utf-8") as meta:  # a second row for a file: check_rows drops it
        meta.write(f"{count},{given['file'].iloc[0]},{given['class'].iloc[0]},{given['label'].iloc[0]},x,y\n")
    report = ingest_folder(target, category, source, show_progress=False)
    assert report.total == count + 1 and report.kept == count - 1
    assert report.dropped == [
        (str(given["file"].iloc[0]), "duplicate file: an earlier row names the same file"),
        (missing, f"missing image: no file images/{missing}"),
    ]
    assert not target.exists(image_key(category, missing))
    assert list(stored_meta(target, category)["file"]) == [file for file in given["file"] if file != missing]


def test_another_meta_file_name(tmp_path: Path, category: Category, target: LocalStore) -> None:
    source = tmp_path / "source"
    count = copy_tiny_dataset(source)
    (source / "meta.csv").rename(source / "labels.csv")
    with pytest.raises(DataError, match="meta.csv not found"):
        ingest_folder(target, category, source, show_progress=False)
    assert list(target.list("")) == []
    assert ingest_folder(target, category, source, meta_name="labels.csv", show_progress=False).kept == count
    assert target.exists(f"{category.data_prefix}/{category.meta}")


def test_a_folder_without_any_image_writes_nothing(tmp_path: Path, category: Category, target: LocalStore) -> None:
    source = tmp_path / "source"
    copy_tiny_dataset(source)
    for image in (source / "images").rglob("*.png"):
        image.unlink()
    with pytest.raises(DataError, match="no images to write"):
        ingest_folder(target, category, source, show_progress=False)
    assert list(target.list("")) == []


def test_an_interrupted_write_leaves_no_meta_csv(tmp_path: Path, category: Category, target: LocalStore) -> None:
    """The meta CSV comes last, so a store never holds a CSV that names images it lacks."""
    copy_tiny_dataset(tmp_path / "source")
    data = next((tmp_path / "source" / "images").rglob("*.png")).read_bytes()
    rows: list[Row] = [("a.png", "Bag", 8, data, {"article": "bag"}), ("b/c.png", "Bag", 8, data, {"article": "tote"})]

    def interrupted() -> Iterator[Row]:
        yield from rows
        raise OSError("the source disk went away")

    with pytest.raises(OSError, match="went away"):
        write_category(target, category, interrupted(), show_progress=False)
    assert target.exists(image_key(category, "b/c.png"))
    assert not target.exists(f"{category.data_prefix}/{category.meta}")
    assert write_category(target, category, iter(rows), show_progress=False) == 2
    assert stored_meta(target, category).to_dict("records") == [  # parse_meta reads labels as text
        {"file": "a.png", "class": "Bag", "label": "8", "article": "bag"},
        {"file": "b/c.png", "class": "Bag", "label": "8", "article": "tote"},
    ]
