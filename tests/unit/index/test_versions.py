"""Collection versions and point ids: the names are stable, parse back, and sort in creation order."""

from __future__ import annotations

import uuid

import pytest

from visearch.index.versions import CollectionVersion, is_uuid, point_id, schema_hash, schema_lag


def test_point_ids_are_stable_uuids_per_category_and_file() -> None:
    first = point_id("shoes", "boot/001.png")
    assert first == point_id("shoes", "boot/001.png")  # a re-run overwrites instead of duplicating
    assert uuid.UUID(first).version == 5 and is_uuid(first)
    assert len({first, point_id("shoes", "boot/002.png"), point_id("bags", "boot/001.png")}) == 3


@pytest.mark.parametrize("text", ["not-a-uuid", "", None, 42])
def test_anything_but_a_uuid_is_no_point_id(text: object) -> None:
    assert not is_uuid(text)  # type: ignore[arg-type]


def test_a_version_name_parses_back_to_the_version() -> None:
    version = CollectionVersion("shoes", "20260101T000000000000", "m1abc", "d4t4")
    assert version.name == "shoes__20260101T000000000000-m1abc-d4t4"
    assert CollectionVersion.parse(version.name) == version
    with_schema = CollectionVersion("shoes", "20260101T000000000000", "m1abc", "d4t4", "5c4e3a")
    assert with_schema.name == "shoes__20260101T000000000000-m1abc-d4t4-5c4e3a"
    assert CollectionVersion.parse(with_schema.name) == with_schema


def test_the_schema_hash_names_fields_and_captions() -> None:
    """No declaration keeps the old three-part names; any edit to fields or captions changes the hash."""
    assert schema_hash({}, []) == ""
    base = schema_hash({"brand": "keyword"}, ["brand"])
    assert base == schema_hash({"brand": "keyword"}, ["brand"]) and len(base) == 8
    edits = [
        ({"brand": "text"}, ["brand"]),
        ({"brand": "keyword", "x": "float"}, ["brand"]),
        ({"brand": "keyword"}, []),
    ]
    assert len({base, *(schema_hash(fields, captions) for fields, captions in edits)}) == 4
    live = CollectionVersion("shoes", "20260101T000000000000", "m1abc", "d4t4", base)
    assert schema_lag(live, {"brand": "keyword"}, ["brand"]) is None and schema_lag(None, {}, ["x"]) is None
    assert "next pipeline run" in str(schema_lag(live, {"brand": "keyword"}, ["brand", "colour"]))


@pytest.mark.parametrize("name", ["shoes", "shoes__v1", "shoes__a-b", "shoes__a-b-c-d-e", "shoes__a--c", "shoes_a-b-c"])
def test_names_that_are_no_version_parse_to_none(name: str) -> None:
    assert CollectionVersion.parse(name) is None


def test_new_versions_sort_in_creation_order_within_one_second() -> None:
    made = [CollectionVersion.new("shoes", f"m{i}", "d4t4") for i in range(5)]
    assert sorted(made, key=lambda v: v.created) == made
    assert len({v.created for v in made}) == 5  # microseconds tell them apart
    assert all(CollectionVersion.parse(v.name) == v for v in made)
