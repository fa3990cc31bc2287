"""Collection versions and point ids: the names are stable, parse back, and sort in creation order."""

from __future__ import annotations

import uuid

import pytest

from visearch.index.versions import CollectionVersion, is_uuid, point_id


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


@pytest.mark.parametrize("name", ["shoes", "shoes__v1", "shoes__a-b", "shoes__a-b-c-d", "shoes_a-b-c"])
def test_names_that_are_no_version_parse_to_none(name: str) -> None:
    assert CollectionVersion.parse(name) is None


def test_new_versions_sort_in_creation_order_within_one_second() -> None:
    made = [CollectionVersion.new("shoes", f"m{i}", "d4t4") for i in range(5)]
    assert sorted(made, key=lambda v: v.created) == made
    assert len({v.created for v in made}) == 5  # microseconds tell them apart
    assert all(CollectionVersion.parse(v.name) == v for v in made)
