"""`visearch search` as a user runs it: JSON answers, filters, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS, jpeg, photo
from tests.unit.cli.runs import assert_one_line_error, visearch
from visearch.settings import Settings
from visearch.storage import LocalStore


def query_file(settings: Settings) -> Path:
    store = LocalStore(settings.objects_dir)
    return settings.objects_dir / next(key for key in store.list(f"datasets/{TINY}/images"))


def test_search_json_answers(indexed_home: Settings) -> None:
    image = query_file(indexed_home)
    result = visearch(indexed_home, "search", "--category", TINY, "--k", "3", "--json", str(image))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["category"] == TINY and len(answer["results"]) == 3
    top = answer["results"][0]
    assert image.as_posix().endswith(top["file"]) and top["similarity"] > 99
    assert {"id", "score", "similarity", "class", "file", "captions"} <= set(top)


def test_search_min_similarity_and_class_filter(indexed_home: Settings) -> None:
    image = query_file(indexed_home)
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
    assert_one_line_error(visearch(indexed_home, "search", *args, str(query_file(indexed_home))), message)


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
    image = query_file(home)
    assert_one_line_error(visearch(home, "search", "-c", TINY, str(image)), "has no index yet")


# --- the search features: filter, text, pages, diversity, best per class, recommend, duplicates ----
BOOTS = '{"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}'


def answer_of(result: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_search_filter_text_pages_and_groups(indexed_home: Settings) -> None:
    image = str(query_file(indexed_home))
    boots = answer_of(visearch(indexed_home, "search", "-c", TINY, "--k", "40", "--filter", BOOTS, "--json", image))
    assert boots["results"] and {r["captions"]["article"] for r in boots["results"]} == {"Ankle boot"}
    assert boots["model_version"] and boots["notice"] is None and boots["results"][0]["calibrated"] is not None
    text = answer_of(visearch(indexed_home, "search", "-c", TINY, "--text", "boot", "--k", "40", "--json"))
    assert text["score_kind"] == "bm25" and len(text["results"]) == TINY_PER_CLASS
    assert all("boot" in r["captions"]["article"].lower() for r in text["results"])
    hybrid = answer_of(visearch(indexed_home, "search", "-c", TINY, "--text", "dress", "--json", image))
    assert hybrid["score_kind"] == "rrf"
    whole = answer_of(visearch(indexed_home, "search", "-c", TINY, "--k", "6", "--json", image))
    page = answer_of(visearch(indexed_home, "search", "-c", TINY, "--k", "3", "--offset", "3", "--json", image))
    assert [r["id"] for r in page["results"]] == [r["id"] for r in whole["results"][3:]]
    assert page["next_offset"] == 6
    best = answer_of(visearch(indexed_home, "search", "-c", TINY, "--group-by-class", "--json", image))
    assert sorted(r["class"] for r in best["results"]) == sorted(TINY_CLASSES)
    diverse = answer_of(visearch(indexed_home, "search", "-c", TINY, "--diverse", "--k", "5", "--json", image))
    assert diverse["results"][0]["id"] == whole["results"][0]["id"]
    table = visearch(indexed_home, "search", "-c", TINY, "--k", "3", image)
    assert "calibrated" in table.stdout and "more: --offset 3" in table.stdout


def test_search_prints_the_unusual_notice(indexed_home: Settings, tmp_path: Path) -> None:
    cup = tmp_path / "cup.jpg"
    cup.write_bytes(jpeg(photo(1)))
    result = visearch(indexed_home, "search", "-c", TINY, "--k", "3", str(cup))
    assert result.returncode == 0, result.stderr
    assert "note: the query is unlike anything in this category" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--filter", '{"must": [{"key": "colour", "match": {"value": "red"}}]}'],
            "filter.must[0].key: unknown column",
        ),
        (["--filter", "{must"], "--filter is not JSON"),
        (["--filter", "[1]"], "--filter must be a JSON object"),
        (["--text", "boot", "--diverse"], "diverse needs one query image and no text"),
        (["--offset", "-1"], "offset must be"),
    ],
)
def test_search_feature_errors_are_one_line(indexed_home: Settings, args: list[str], message: str) -> None:
    assert_one_line_error(visearch(indexed_home, "search", "-c", TINY, *args, str(query_file(indexed_home))), message)


def test_search_needs_an_image_or_text(indexed_home: Settings) -> None:
    assert_one_line_error(visearch(indexed_home, "search", "-c", TINY), "give a query IMAGE, --text, or both")


def test_recommend_with_likes_and_unlikes(indexed_home: Settings) -> None:
    image = query_file(indexed_home)
    whole = answer_of(visearch(indexed_home, "search", "-c", TINY, "--k", "40", "--json", str(image)))["results"]
    liked = whole[0]
    rival = next(r for r in whole if r["class"] != liked["class"])
    plain = answer_of(visearch(indexed_home, "recommend", "-c", TINY, "--like", liked["id"], "--k", "40", "--json"))
    pushed = answer_of(
        visearch(
            indexed_home, "recommend", "-c", TINY, "--like", liked["id"], "--unlike", rival["id"], "--k", "40", "--json"
        )
    )

    def mean_rank(results: list[dict]) -> float:  # type: ignore[type-arg]
        ranks = [i for i, r in enumerate(results) if r["class"] == rival["class"] and r["id"] != rival["id"]]
        return sum(ranks) / len(ranks)

    assert pushed["score_kind"] == "recommend" and mean_rank(pushed["results"]) > mean_rank(plain["results"])
    uploaded = answer_of(visearch(indexed_home, "recommend", "-c", TINY, "--like-image", str(image), "--json"))
    assert uploaded["results"][0]["id"] == liked["id"]
    assert_one_line_error(
        visearch(indexed_home, "recommend", "-c", TINY, "--unlike", rival["id"]), "at least one positive"
    )
    assert_one_line_error(visearch(indexed_home, "recommend", "-c", TINY, "--like", "nope"), "invalid point id")


def test_duplicates_pages(indexed_home: Settings) -> None:
    whole = answer_of(visearch(indexed_home, "duplicates", TINY, "--limit", "100", "--json"))
    assert whole["threshold"] == 0.97 and whole["total"] == len(whole["pairs"])
    table = visearch(indexed_home, "duplicates", "--category", TINY)
    assert table.returncode == 0 and f"{whole['total']} pairs above 0.97" in table.stdout
    assert_one_line_error(visearch(indexed_home, "duplicates", TINY, "--limit", "0"), "limit must be")
    assert_one_line_error(visearch(indexed_home, "duplicates", "nope"), "unknown category 'nope'")


def test_categories_lists_every_registry_entry_in_aligned_columns(indexed_home: Settings) -> None:
    from visearch.categories import load_registry

    result = visearch(indexed_home, "categories")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    registry = load_registry(indexed_home.visearch_categories)
    assert [line.split()[0] for line in lines] == list(registry.names())
    # Every column starts where it does on the other lines, whatever the length of a name or a title.
    for category, line in zip(registry.categories, lines, strict=True):
        assert line.index(category.title) == lines[0].index(registry.categories[0].title), result.stdout
        assert line.index(" images  ") == lines[0].index(" images  "), result.stdout
    tiny = next(line for line in lines if line.startswith(f"{TINY} "))
    assert f" {len(TINY_CLASSES) * TINY_PER_CLASS} images  {TINY}__" in tiny
    assert all(line.endswith("(not indexed)") for line in lines if line != tiny)
