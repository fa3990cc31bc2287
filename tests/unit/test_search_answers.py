"""Every option's limits with the message a caller reads, and the JSON shape of answers (fast, no engine).

The REST API and the CLI return these messages as 400s and these dicts as JSON; the UI shows both.
"""

from __future__ import annotations

import pytest

from visearch.errors import InvalidQueryError
from visearch.index import Hit
from visearch.search_options import BatchAnswer, SearchAnswer, SearchOptions, SearchResult, duplicates_page

SIMILARITY = r"^min_similarity must be a percentage from 0 to 100, got "
CLASS = "^class_filter must be a class name of at most 200 characters$"
TEXT = "^text must be a string of at most 500 characters$"
OFFSET = r"^offset must be an integer from 0, with offset \+ k at most 10000$"
GROUPED = "^group_by_class returns one page of one hit per class: no offset, no diverse$"


@pytest.mark.parametrize(
    "options",
    [
        {"min_similarity": 0},
        {"min_similarity": 100},
        {"min_similarity": 99.5},
        {"class_filter": "B" * 200},
        {"filter": {}},
        {"text": "t" * 500},
        {"offset": 9990, "k": 10},
        {"offset": 0},
        {"group_by_class": True},
        {"diverse": True, "offset": 10},
    ],
)
def test_options_at_their_limits_are_accepted(options: dict[str, object]) -> None:
    SearchOptions(**options).check(max_k=100)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_similarity": -0.5}, SIMILARITY + "-0.5$"),
        ({"min_similarity": 100.5}, SIMILARITY + "100.5$"),
        ({"min_similarity": 101}, SIMILARITY + "101$"),
        ({"min_similarity": True}, SIMILARITY + "True$"),
        ({"min_similarity": "50"}, SIMILARITY + "'50'$"),
        ({"class_filter": "B" * 201}, CLASS),
        ({"class_filter": 3}, CLASS),
        ({"filter": [1]}, "^filter must be a JSON object, got list$"),
        ({"filter": "class=Bag"}, "^filter must be a JSON object, got str$"),
        ({"text": "t" * 501}, TEXT),
        ({"text": 5}, TEXT),
        ({"offset": -1}, OFFSET),
        ({"offset": 9991, "k": 10}, OFFSET),
        ({"offset": True}, OFFSET),
        ({"offset": 1.0}, OFFSET),
        ({"diverse": 1}, "^diverse must be true or false$"),
        ({"group_by_class": "yes"}, "^group_by_class must be true or false$"),
        ({"group_by_class": True, "offset": 10}, GROUPED),
        ({"group_by_class": True, "diverse": True}, GROUPED),
    ],
)
def test_an_option_out_of_its_limits_is_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        SearchOptions(**options).check(max_k=100)  # type: ignore[arg-type]


PAYLOAD = {"file": "a.png", "class": "Bag", "label": 3, "image_key": "k/a.png", "image_uri": "s3://b/k/a.png"}


def test_a_result_carries_the_payload_as_class_file_and_captions() -> None:
    result = SearchResult.from_hit(Hit("id-a", 0.87654321, {**PAYLOAD, "colour": "red", "note": None}), 42.5)
    assert result.to_dict() == {
        "id": "id-a",
        "score": 0.876543,
        "similarity": 87.65,
        "calibrated": 42.5,
        "class": "Bag",
        "file": "a.png",
        "captions": {"colour": "red", "note": None},
    }
    assert result.image_key == "k/a.png"  # where the UI fetches the image; not part of the JSON
    bare = SearchResult.from_hit(Hit("id-b", -0.2, {}))
    assert (bare.cls, bare.file, bare.image_key, bare.captions, bare.similarity, bare.calibrated) == (
        "",
        "",
        "",
        {},
        0.0,
        None,
    )
    assert SearchResult.from_hit(Hit("id-c", 0.5, {"class": 7, "file": 8})).to_dict()["class"] == "7"


def test_an_answer_as_json() -> None:
    result = SearchResult("id-a", 0.9, 90.0, "Bag", "a.png", {"colour": "red"}, "k/a.png", 55.0)
    answer = SearchAnswer([result], "m1", "shop__v1", "rrf", "unlike anything in this category", 10)
    assert answer.to_dict() == {
        "results": [result.to_dict()],
        "model_version": "m1",
        "collection": "shop__v1",
        "score_kind": "rrf",
        "notice": "unlike anything in this category",
        "next_offset": 10,
    }


def test_a_batch_answer_takes_the_version_of_its_first_answer() -> None:
    answers = [SearchAnswer([], "m1", "shop__v1", "bm25"), SearchAnswer([], "m2", "shop__v2", "cosine")]
    batch = BatchAnswer.of(answers)
    assert (batch.model_version, batch.collection, batch.score_kind) == ("m1", "shop__v1", "bm25")
    with pytest.raises(InvalidQueryError, match="^no images given$"):
        BatchAnswer.of([])


PAIRS = [
    {"a": "p1", "b": "p2", "similarity": 0.999912},
    {"a": "p3", "b": "p4", "similarity": 0.98},
    {"a": "p5", "b": "p1", "similarity": 0.975},
]
PAYLOADS = {f"p{i}": {"file": f"{i}.png", "class": "Bag", "colour": f"c{i}"} for i in (1, 2, 3, 4)}


def test_duplicates_come_in_pages_with_both_images() -> None:
    first = duplicates_page(PAIRS, PAYLOADS, 0, 2, 0.97)
    assert first.to_dict() == {
        "pairs": [
            {
                "similarity": 99.99,
                "first": SearchResult.from_hit(Hit("p1", 0.999912, PAYLOADS["p1"])).to_dict(),
                "second": SearchResult.from_hit(Hit("p2", 0.999912, PAYLOADS["p2"])).to_dict(),
            },
            {
                "similarity": 98.0,
                "first": SearchResult.from_hit(Hit("p3", 0.98, PAYLOADS["p3"])).to_dict(),
                "second": SearchResult.from_hit(Hit("p4", 0.98, PAYLOADS["p4"])).to_dict(),
            },
        ],
        "total": 3,
        "threshold": 0.97,
        "next_offset": 2,
    }
    assert first.pairs[0].first.file == "1.png" and first.pairs[0].second.captions == {"colour": "c2"}
    last = duplicates_page(PAIRS, PAYLOADS, 2, 2, 0.97)
    assert [(p.similarity, p.first.id, p.second.id) for p in last.pairs] == [(97.5, "p5", "p1")]
    assert (last.total, last.next_offset) == (3, None)
    assert last.pairs[0].first.file == "" and last.pairs[0].second.file == "1.png"  # p5: gone since measured
    exact = duplicates_page(PAIRS, PAYLOADS, 1, 2, 0.97)
    assert exact.next_offset is None and [p.first.id for p in exact.pairs] == ["p3", "p5"]
    assert duplicates_page(PAIRS, PAYLOADS, 3, 2, 0.97).to_dict() == {
        "pairs": [],
        "total": 3,
        "threshold": 0.97,
        "next_offset": None,
    }
