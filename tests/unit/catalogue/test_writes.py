"""Add, replace and remove on a live category, on the embedded engine and on qdrant-client (server path)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.unit.catalogue.conftest import edge_index, pixels, png
from visearch.catalogue import Catalogue, ChangeLog
from visearch.catalogue.writes import Change
from visearch.errors import (
    DuplicateImageError,
    InvalidImageError,
    InvalidRowError,
    UnknownImageError,
)
from visearch.index import SearchRequest, point_id
from visearch.settings import Settings


def found(catalogue: Catalogue, ids: list[str]) -> set[str]:
    live = catalogue.index.require_live(catalogue.category.name)
    return {record.id for record in catalogue.index.records(live.name, ids)}


def nearest(catalogue: Catalogue, data: bytes) -> str:
    live = catalogue.index.require_live(catalogue.category.name)
    return catalogue.index.search(live.name, SearchRequest(1, vector=pixels(data).tolist()))[0].id


def count(catalogue: Catalogue) -> int:
    return catalogue.index.count(catalogue.index.require_live(catalogue.category.name).name)


def test_an_add_is_found_by_the_next_query_and_a_repeat_changes_nothing(live: Catalogue) -> None:
    before = count(live)
    first = live.add(png(1), {"class": "Bag", "article": "tote"})
    again = live.add(png(1), {"class": "Bag", "article": "tote"})
    assert first.created and not again.created
    assert again.id == first.id
    assert nearest(live, png(1)) == first.id
    assert count(live) == before + 1
    assert ChangeLog(live.store, live.category).last_seq() == 1
    assert first.file in set(live.rows()["file"])


def test_the_same_file_with_other_bytes_is_a_conflict(live: Catalogue) -> None:
    live.add(png(1), {"class": "Bag", "file": "mine/a.png"})
    with pytest.raises(DuplicateImageError, match="file"):
        live.add(png(2), {"class": "Bag", "file": "mine/a.png"})


def test_replace_changes_vector_and_payload(live: Catalogue) -> None:
    added = live.add(png(1), {"class": "Bag", "article": "tote"})
    live.replace(added.id, png(2), {"article": "backpack"})
    stored = live.index.vectors(live.index.require_live(live.category.name).name, [added.id])[added.id]
    assert np.allclose(stored, pixels(png(2)), atol=1e-5)
    (record,) = live.index.records(live.index.require_live(live.category.name).name, [added.id])
    assert record.payload["article"] == "backpack" and record.payload["class"] == "Bag"
    row = live.rows().set_index("file").loc[added.file]
    assert row["article"] == "backpack"


def test_a_removed_image_is_gone_from_queries_and_data(live: Catalogue) -> None:
    rows = live.rows()
    victim = str(rows["file"].iloc[0])
    data = live.store.get_bytes(str(rows["key"].iloc[0]))
    pid = point_id(live.category.name, victim)
    assert nearest(live, data) == pid
    live.remove(pid)
    assert nearest(live, data) != pid
    assert pid not in found(live, [pid])
    assert victim not in set(live.rows()["file"])
    with pytest.raises(UnknownImageError, match="id"):
        live.remove(pid)


def test_crash_between_image_and_record_leaves_nothing_and_a_retry_completes(live: Catalogue) -> None:
    log = ChangeLog(live.store, live.category)
    before = count(live)
    log.put_image(png(3))  # a writer killed after the image object, before its record
    assert log.last_seq() == 0 and count(live) == before and len(live.rows()) == before
    result = live.add(png(3), {"class": "Dress"})
    assert result.created and log.last_seq() == 1 and count(live) == before + 1


def test_a_record_the_index_missed_is_applied_by_the_next_write(live: Catalogue) -> None:
    log = ChangeLog(live.store, live.category)
    digest, key = log.put_image(png(4))
    label = live.rows().groupby("class")["label"].first()["Dress"]
    log.append("add", "lost.png", {"class": "Dress", "label": label}, digest=digest, key=key)
    # killed before the index write: catch_up (service start) or the next write applies it
    assert nearest(live, png(4)) != point_id(live.category.name, "lost.png")
    live.catch_up()
    assert nearest(live, png(4)) == point_id(live.category.name, "lost.png")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"label": 1}, "class"),
        ({"class": "Bag", "colour": "red"}, "colour"),
        ({"class": "Bag", "label": 99}, "label"),
        ({"class": "Bag", "label": "x"}, "label"),
    ],
)
def test_a_bad_row_names_its_field_and_writes_nothing(live: Catalogue, row: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRowError) as caught:
        live.add(png(5), row)
    assert caught.value.field == field and caught.value.status == 422
    assert ChangeLog(live.store, live.category).last_seq() == 0


def test_not_an_image_is_refused_before_anything_is_written(live: Catalogue) -> None:
    with pytest.raises(InvalidImageError):
        live.add(b"not an image", {"class": "Bag"})
    assert not list(live.store.list(f"{live.category.data_prefix}/images/changes"))


def test_a_new_class_is_welcome_and_marked_unseen(live: Catalogue) -> None:
    result = live.add(png(6), {"class": "Hat"})
    assert result.new_class and result.record is not None
    labels = live.rows().groupby("class")["label"].first()
    assert labels["Hat"] == labels.drop("Hat").max() + 1


def test_another_process_reader_sees_an_embedded_write(live: Catalogue, engine: str) -> None:
    if engine != "edge":
        pytest.skip("the server path has no version files to reopen")
    # A second backend on the same home: what the service holds while the CLI writes.
    reader = edge_index(Settings(visearch_home=live.lock_dir.parent, _env_file=None))
    name = live.index.require_live(live.category.name).name
    before = reader.count(name)
    live.add(png(7), {"class": "Bag"})
    # Seen once the writer lets go (its linger: 0.5 s idle; a CLI process at its exit), the reader
    # answering from its handle meanwhile: then the generation has changed and the reader reopens.
    deadline = time.monotonic() + 10
    while reader.count(name) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.count(name) == before + 1
    reader.close()


def test_a_batch_writes_the_good_items_and_reports_each_bad_one(live: Catalogue) -> None:
    before = count(live)
    changes = [
        Change("add", png(1), {"class": "Bag"}),
        Change("add", b"not an image", {"class": "Bag"}),
        Change("add", png(2), {"class": "Hat"}),
        Change("add", png(3), {"class": "Hat"}),  # the batch's own new class: the same new label
        Change("add", png(4), {"class": "Bag", "colour": "red"}),
        Change("remove", id="no-such-id"),
    ]
    results = live.write_many(changes, batch=4)
    assert [type(r).__name__ for r in results] == [
        "WriteResult",
        "InvalidImageError",
        "WriteResult",
        "WriteResult",
        "InvalidRowError",
        "UnknownImageError",
    ]
    assert count(live) == before + 3
    assert nearest(live, png(2)) == results[2].id  # type: ignore[union-attr]
    labels = live.rows().groupby("class")["label"].unique()
    assert len(labels["Hat"]) == 1
    assert ChangeLog(live.store, live.category).last_seq() == 3
    removed = live.write_many([Change("remove", id=results[0].id)])  # type: ignore[union-attr]
    assert removed[0].record is not None and count(live) == before + 2  # type: ignore[union-attr]


@pytest.mark.parametrize("checked_first", [False, True], ids=["removals-first", "an-add-first"])
def test_a_batch_sees_its_own_removals_as_writes_one_by_one_do(live: Catalogue, checked_first: bool) -> None:
    """Removing a class's every image frees its name and label within the batch, as in separate writes.

    Also when an add earlier in the batch already looked at the classes (the batch keeps count).
    """
    added = [live.add(png(20 + i), {"class": "Scarf"}) for i in range(2)]
    freed = added[0].record.row["label"]  # type: ignore[union-attr]
    first = [Change("add", png(31), {"class": "Bag"})] if checked_first else []
    results = live.write_many(
        [
            *first,
            *(Change("remove", id=write.id) for write in added),
            Change("add", png(30), {"class": "Scarf", "label": 999}),
        ]
    )
    assert all(not isinstance(result, Exception) for result in results), results
    assert results[-1].new_class  # type: ignore[union-attr]
    scarves = live.rows().query("`class` == 'Scarf'")
    assert scarves["label"].tolist() == [999] and freed != 999


def test_a_batch_killed_after_its_records_is_completed_by_the_next_write(live: Catalogue) -> None:
    # What a batch leaves when killed between its records and its index transaction.
    log = ChangeLog(live.store, live.category)
    label = live.rows().groupby("class")["label"].first()["Dress"]
    lost = []
    for i in range(2):
        digest, key = log.put_image(png(10 + i))
        lost.append(log.append("add", f"lost/{i}.png", {"class": "Dress", "label": label}, digest=digest, key=key))
    ids = [point_id(live.category.name, record.file) for record in lost]
    assert not found(live, ids)
    live.write_many([Change("add", png(5), {"class": "Dress"})])
    assert found(live, ids) == set(ids)


def test_a_write_checks_against_what_another_writer_and_a_new_meta_csv_left(live: Catalogue) -> None:
    """A catalogue keeps the rows across writes; what changed meanwhile elsewhere is still seen."""
    live.add(png(1), {"class": "Bag"})  # this catalogue's rows are now kept
    other = Catalogue(live.store, live.index, live.category, live.embed, live.lock_dir, wait=5.0)  # another process
    mine = other.add(png(2), {"class": "Bag", "file": "shared/a.png"})
    with pytest.raises(DuplicateImageError, match="shared/a.png"):
        live.add(png(3), {"class": "Bag", "file": "shared/a.png"})
    other.remove(mine.id)
    assert live.add(png(3), {"class": "Bag", "file": "shared/a.png"}).created  # the removal was seen too

    key = f"{live.category.data_prefix}/{live.category.meta}"
    rows = live.base_rows()
    bags = rows[rows["class"] == "Bag"]
    meta = bags[["file", "class"]].assign(label=41)  # a new meta CSV: only the bags, relabelled
    live.store.put_bytes(key, meta.to_csv().encode())
    with pytest.raises(InvalidRowError, match="41"):
        live.add(png(4), {"class": "Bag", "label": 0})
    assert live.add(png(4), {"class": "Dress", "label": 0}).new_class  # Dress left with the old CSV


def test_the_applied_marker_waits_for_the_flush_and_a_write_applies_nothing_twice(live: Catalogue, engine: str) -> None:
    """Writes are group-committed: the change log is the write-ahead log, the marker what is on disk."""
    if engine == "edge":
        live.index.backend.linger = 30  # type: ignore[attr-defined]  # only close() lets the writer go
    embedded: list[int] = []
    real = live.embed

    def counted(version: object, datas: list[bytes]) -> np.ndarray:
        embedded.append(len(datas))
        return real(version, datas)  # type: ignore[arg-type]

    live.embed = counted  # type: ignore[assignment]
    first = live.add(png(1), {"class": "Bag"})
    second = live.add(png(2), {"class": "Bag"})
    assert embedded == [1, 1]  # the second write did not apply the first one again
    assert nearest(live, png(1)) == first.id and nearest(live, png(2)) == second.id  # searchable at once
    name = live.index.require_live(live.category.name).name
    on_disk = live.log.applied(name)
    assert on_disk == (None if engine == "edge" else second.record.seq)  # type: ignore[union-attr]
    live.index.close()  # the writer lets go: flushed, then the marker
    assert live.log.applied(name) == second.record.seq  # type: ignore[union-attr]


@pytest.mark.parametrize(("kind", "suffix"), [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp")])
def test_an_added_image_is_named_by_its_content_with_its_format_s_extension(
    live: Catalogue, kind: str, suffix: str
) -> None:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png(9))) as image:
        image.convert("RGB").save(buffer, format=kind)
    result = live.add(buffer.getvalue(), {"class": "Bag"})
    assert result.file.startswith("added/") and result.file.endswith(suffix)
    assert result.record is not None and result.record.key.endswith(suffix)
