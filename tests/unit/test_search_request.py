"""Search options as a user gives them, through ``build_request``, answered by a real ``:memory:`` index.

Fast (no model, a dozen points): the mutation check of ``visearch.search_options`` runs these.
The vectors are chosen so each option's effect is one known id set: cosines to the query
``[1, 0, 0, 0]`` are 1.0, 0.8, 0.497, 0.3, 0.0 and -1.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.unit.index.modes import index_settings
from visearch.categories import Category
from visearch.errors import InvalidQueryError
from visearch.index import SearchRequest, VectorIndex, open_index
from visearch.search_options import SearchOptions, build_request

QUERY = [1.0, 0.0, 0.0, 0.0]
COSINES = {"same": 1.0, "close": 0.8, "half": 0.497, "far": 0.3, "square": 0.0, "opposite": -1.0}
CLASSES = {"same": "Bag", "close": "Boot", "half": "Bag", "far": "Boot", "square": "Bag", "opposite": "Boot"}
NOTES = {
    "same": "red leather bag",
    "close": "brown leather boot",
    "half": "blue canvas bag",
    "far": "black rubber boot",
    "square": "green paper bag",
    "opposite": "white rubber boot",
}
CAPTIONED = Category(name="shop", title="Shop", fields={"note": "text"}, captions=["note"])
PLAIN = Category(name="plain", title="Plain")


def vector_at(cosine: float) -> list[float]:
    return [cosine, float(np.sqrt(max(0.0, 1 - cosine**2))), 0.0, 0.0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VectorIndex, str]]:
    index = open_index(index_settings("memory", Path(tmp_path_factory.mktemp("request"))))
    version = index.create("shop", "m", "d", 4, {"note": "text"})
    names = list(COSINES)
    vectors = np.array([vector_at(COSINES[n]) for n in names], dtype=np.float32)
    payloads = [{"file": f"{n}.png", "class": CLASSES[n], "label": 0, "note": NOTES[n]} for n in names]
    index.upsert(version.name, names_as_ids(names), vectors, payloads, captions=["note"])
    index.seal(version.name)
    yield index, version.name
    index.close()


def names_as_ids(names: list[str]) -> list[str]:
    from visearch.index import point_id

    return [point_id("shop", f"{n}.png") for n in names]


ID_NAME = dict(zip(names_as_ids(list(COSINES)), COSINES, strict=True))


def found(shop: tuple[VectorIndex, str], request: SearchRequest) -> list[str]:
    index, collection = shop
    return [ID_NAME[hit.id] for hit in index.search(collection, request)]


def search(shop: tuple[VectorIndex, str], category: Category = CAPTIONED, **options: object) -> tuple[list[str], str]:
    exclude = options.pop("exclude", ())
    positives = options.pop("positives", None)
    negatives = options.pop("negatives", None)
    vector = options.pop("vector", QUERY)
    request, kind = build_request(
        category,
        SearchOptions(**options),  # type: ignore[arg-type]
        vector=vector,  # type: ignore[arg-type]
        positives=positives,  # type: ignore[arg-type]
        negatives=negatives,  # type: ignore[arg-type]
        exclude=exclude,  # type: ignore[arg-type]
    )
    return found(shop, request), kind


def test_nearest_first_and_k_results(shop: tuple[VectorIndex, str]) -> None:
    assert search(shop, k=3) == (["same", "close", "half"], "cosine")
    assert search(shop, k=6)[0] == list(COSINES)


def test_min_similarity_is_a_percentage_floor_and_zero_means_none(shop: tuple[VectorIndex, str]) -> None:
    assert search(shop, min_similarity=50)[0] == ["same", "close"]  # 0.497 is below 50 %
    assert search(shop, min_similarity=49)[0] == ["same", "close", "half"]
    assert search(shop, min_similarity=90)[0] == ["same"]
    # 0 is no floor at all: even the opposite image (cosine -1) is a result.
    assert search(shop, min_similarity=0)[0] == list(COSINES)


def test_offset_pages_and_exclude_drops_ids(shop: tuple[VectorIndex, str]) -> None:
    assert search(shop, k=2, offset=2)[0] == ["half", "far"]
    assert search(shop, k=2, exclude=names_as_ids(["same"]))[0] == ["close", "half"]


def test_class_filter_keeps_one_class_and_combines_with_the_filter(shop: tuple[VectorIndex, str]) -> None:
    assert search(shop, class_filter="Boot")[0] == ["close", "far", "opposite"]
    only_rubber = {"must": [{"key": "note", "match": {"text": "rubber"}}]}
    assert search(shop, filter=only_rubber)[0] == ["far", "opposite"]
    assert search(shop, class_filter="Bag", filter={"must": [{"key": "note", "match": {"text": "leather"}}]})[0] == [
        "same"
    ]
    with pytest.raises(InvalidQueryError, match="unknown column 'colour'"):
        search(shop, filter={"must": [{"key": "colour", "match": {"value": "red"}}]})


def test_diverse_trades_the_near_duplicate_for_variety(shop: tuple[VectorIndex, str]) -> None:
    plain, _ = search(shop, k=2)
    diverse, kind = search(shop, k=2, diverse=True)
    assert plain == ["same", "close"]
    assert diverse[0] == "same" and diverse[1] != "close" and kind == "cosine"


def test_the_score_kind_says_how_the_query_was_answered(shop: tuple[VectorIndex, str]) -> None:
    rubber, kind = search(shop, k=6, text="rubber", vector=None)
    assert (sorted(rubber), kind) == (["far", "opposite"], "bm25")
    assert search(shop, k=1, text="leather")[1] == "rrf"
    assert search(shop, k=1, vector=None, positives=[QUERY])[1] == "recommend"
    assert search(shop, k=1, vector=None, positives=[QUERY], text="leather")[1] == "rrf"
    # Blank text is no text: the image alone answers.
    assert search(shop, k=1, text="   ") == (["same"], "cosine")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text": "boot"}, "category plain has no caption columns"),
        ({"vector": None}, "give an image, examples or text to search with"),
        ({"vector": None, "text": "   "}, "give an image, examples or text to search with"),
        ({"vector": None, "positives": []}, "give an image, examples or text to search with"),
    ],
)
def test_a_query_without_anything_to_search_with_is_refused(
    shop: tuple[VectorIndex, str], options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidQueryError, match=f"^{message}$"):
        search(shop, PLAIN, **options)


def test_text_without_a_searchable_word_is_refused(shop: tuple[VectorIndex, str]) -> None:
    with pytest.raises(InvalidQueryError, match=r"^text '\?\?\?' has no searchable word$"):
        search(shop, text="???")


def test_group_by_class_and_diverse_refuse_what_the_engines_answer_differently(
    shop: tuple[VectorIndex, str],
) -> None:
    both = "group_by_class works with an image or a text query, not with both"
    with pytest.raises(InvalidQueryError, match=f"^{both}$"):
        search(shop, group_by_class=True, text="boot")
    with pytest.raises(InvalidQueryError, match=f"^{both}$"):
        search(shop, group_by_class=True, text="boot", vector=None, positives=[QUERY])
    # One kind of query alone is fine.
    search(shop, group_by_class=True)
    search(shop, group_by_class=True, text="boot", vector=None)
    diverse = "diverse needs one query image and no text"
    for options in ({"text": "boot"}, {"vector": None, "positives": [QUERY]}, {"vector": None, "text": "boot"}):
        with pytest.raises(InvalidQueryError, match=f"^{diverse}$"):
            search(shop, diverse=True, **options)


def test_examples_recommend_and_a_negative_example_pushes_its_look_alikes_down(shop: tuple[VectorIndex, str]) -> None:
    assert search(shop, k=2, vector=None, positives=[QUERY]) == (["same", "close"], "recommend")
    ranked, kind = search(shop, k=6, vector=None, positives=[QUERY], negatives=[vector_at(0.8)])
    assert kind == "recommend" and ranked[0] == "same" and ranked[-1] == "close"
