"""Browsing a category (visearch.browse) on the indexed tiny category: pages, filters, limits, random pick."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tests.helpers import PLAIN, TINY, TINY_CLASSES, TINY_PER_CLASS
from tests.unit.homes import search_engine
from visearch.browse import MAX_PAGE, browse, random_image
from visearch.errors import InvalidQueryError, NotFoundError, UnknownCategoryError
from visearch.search import SearchEngine
from visearch.settings import Settings

ALL = len(TINY_CLASSES) * TINY_PER_CLASS
BOOTS = {"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def walk(engine: SearchEngine, limit: int, **options: object) -> list[str]:
    """Every page from offset 0, following next_offset; the ids in order."""
    ids: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = browse(engine, TINY, offset=offset, limit=limit, **options)  # type: ignore[arg-type]
        assert page.offset == offset and len(page.items) <= limit
        ids += [item.id for item in page.items]
        assert len(ids) <= ALL, "the pages never end"
        offset = page.next_offset
    return ids


def test_pages_cover_the_category_exactly_once_in_a_stable_order(engine: SearchEngine) -> None:
    ids = walk(engine, 7)
    assert len(ids) == ALL and len(set(ids)) == ALL
    assert walk(engine, 7) == ids == walk(engine, ALL)  # the same order again, whatever the page size
    last = browse(engine, TINY, offset=ALL - 5, limit=5)
    assert len(last.items) == 5 and last.next_offset is None  # a full last page says it is the last
    assert browse(engine, TINY, offset=ALL, limit=5).items == []
    item = browse(engine, TINY, limit=1).items[0]
    assert item.cls in TINY_CLASSES and item.file and isinstance(item.label, int) and "article" in item.captions
    assert engine.store.get_bytes(item.image_key)  # the UI shows it from here


def test_a_filter_narrows_the_pages(engine: SearchEngine) -> None:
    boots = walk(engine, 3, filter=BOOTS)
    assert len(boots) == TINY_PER_CLASS
    page = browse(engine, TINY, limit=MAX_PAGE, filter=BOOTS)
    assert {item.captions["article"] for item in page.items} == {"Ankle boot"} and page.next_offset is None
    assert set(boots) < set(walk(engine, ALL))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"offset": -1}, "offset must be an integer from 0"),
        ({"limit": 0}, "limit must be an integer from 1 to 100"),
        ({"limit": MAX_PAGE + 1}, "limit must be an integer from 1 to 100"),
        ({"filter": {"must": [{"key": "colour", "match": {"value": "red"}}]}}, "unknown column 'colour'"),
    ],
)
def test_bad_pages_and_filters_are_refused(engine: SearchEngine, options: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidQueryError, match=message):
        browse(engine, TINY, **options)


def test_unknown_and_unindexed_categories(engine: SearchEngine) -> None:
    with pytest.raises(UnknownCategoryError):
        browse(engine, "nope")
    with pytest.raises(NotFoundError, match="has no index yet"):
        browse(engine, PLAIN)


def test_random_pick_reaches_the_whole_category(engine: SearchEngine) -> None:
    rng = random.Random(3)
    picked = {random_image(engine, TINY, rng).id for _ in range(400)}
    assert picked == set(walk(engine, ALL))  # every image, not only a first few
