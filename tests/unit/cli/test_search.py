"""`visearch search` as a user runs it: JSON answers, filters, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TINY, assert_one_line_error, visearch
from visearch.settings import Settings
from visearch.storage import LocalStore


def search_image(settings: Settings) -> Path:
    store = LocalStore(settings.objects_dir)
    return settings.objects_dir / next(key for key in store.list(f"datasets/{TINY}/images"))


def test_search_json_answers(indexed_home: Settings) -> None:
    image = search_image(indexed_home)
    result = visearch(indexed_home, "search", "--category", TINY, "--k", "3", "--json", str(image))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["category"] == TINY and len(answer["results"]) == 3
    top = answer["results"][0]
    assert image.as_posix().endswith(top["file"]) and top["similarity"] > 99
    assert {"id", "score", "similarity", "class", "file", "captions"} <= set(top)


def test_search_min_similarity_and_class_filter(indexed_home: Settings) -> None:
    image = search_image(indexed_home)
    result = visearch(indexed_home, "search", "-c", TINY, "--k", "10", "--min-similarity", "99.9", "--json", str(image))
    assert [r["file"] for r in json.loads(result.stdout)["results"]] == [
        image.relative_to(indexed_home.objects_dir / "datasets" / TINY / "images").as_posix()
    ]
    result = visearch(indexed_home, "search", "-c", TINY, "--class", "Bag", "--json", str(image))
    classes = {r["class"] for r in json.loads(result.stdout)["results"]}
    assert classes == {"Bag"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "nope"], "unknown category 'nope'"),
        (["--category", TINY, "--k", "0"], "k must be an integer from 1"),
        (["--category", TINY, "--k", "-3"], "k must be an integer from 1"),
        (["--category", TINY, "--min-similarity", "150"], "min_similarity must be a percentage"),
    ],
)
def test_search_bad_parameters_are_one_line_errors(indexed_home: Settings, args: list[str], message: str) -> None:
    assert_one_line_error(visearch(indexed_home, "search", *args, str(search_image(indexed_home))), message)


def test_search_bad_images_are_one_line_errors(indexed_home: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    assert_one_line_error(visearch(indexed_home, "search", "-c", TINY, str(missing)), "cannot read")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    assert_one_line_error(visearch(indexed_home, "search", "-c", TINY, str(corrupt)), "corrupt or truncated image")
    text = tmp_path / "notes.png"
    text.write_text("just text")
    assert_one_line_error(visearch(indexed_home, "search", "-c", TINY, str(text)), "not a supported image")


def test_search_before_indexing_says_to_run_the_pipeline(home: Settings) -> None:
    image = search_image(home)
    assert_one_line_error(visearch(home, "search", "-c", TINY, str(image)), "has no index yet")
