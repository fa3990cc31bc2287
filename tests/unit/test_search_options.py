"""What a search takes and gives, without an engine: option checks and the batch answer."""

from __future__ import annotations

import pytest

from visearch.errors import InvalidQueryError
from visearch.search_options import (
    BatchAnswer,
    SearchAnswer,
    SearchOptions,
    SearchResult,
    check_batch,
    check_int,
)


def result(point_id: str) -> SearchResult:
    return SearchResult(point_id, 0.9, 90.0, "Bag", f"{point_id}.png")


def test_check_int_takes_integers_in_range_only() -> None:
    assert check_int("limit", 1, 1, 5) == 1
    assert check_int("limit", 5, 1, 5) == 5
    for wrong in (0, 6, True, 2.0, "3", None):
        with pytest.raises(InvalidQueryError, match=r"^limit must be an integer from 1 to 5, got "):
            check_int("limit", wrong, 1, 5)


def test_k_is_checked_as_every_other_integer_limit() -> None:
    SearchOptions(k=7).check(max_k=7)
    with pytest.raises(InvalidQueryError, match="k must be an integer from 1 to 7, got 8"):
        SearchOptions(k=8).check(max_k=7)
    with pytest.raises(InvalidQueryError, match="got True"):
        SearchOptions(k=True).check(max_k=7)


def test_a_batch_holds_one_to_limit_images() -> None:
    check_batch(1, 16)
    check_batch(16, 16)
    for count in (0, 17):
        with pytest.raises(InvalidQueryError, match=f"a batch holds 1 to 16 images, got {count}"):
            check_batch(count, 16)


def test_batch_answer_keeps_the_order_of_the_images() -> None:
    answers = [
        SearchAnswer([result("a"), result("b")], "m1", "tiny__v1", "rrf", None, 2),
        SearchAnswer([result("c")], "m1", "tiny__v1", "rrf", "unlike anything in this category", None),
    ]
    batch = BatchAnswer.of(answers)
    assert [[r.id for r in results] for results in batch.results] == [["a", "b"], ["c"]]
    assert batch.notices == [None, "unlike anything in this category"]
    assert batch.next_offsets == [2, None]
    assert (batch.model_version, batch.collection, batch.score_kind) == ("m1", "tiny__v1", "rrf")
    with pytest.raises(InvalidQueryError, match="no images"):
        BatchAnswer.of([])
