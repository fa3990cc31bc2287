"""SearchEngine's search features on the indexed demo category: filters, text, hybrid, recommend,
pagination, diversity, best per class, facets, honest similarity and near-duplicates."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.helpers import PLAIN, TINY, TINY_CLASSES, TINY_PER_CLASS, photo
from tests.unit.homes import search_engine
from visearch.errors import ConflictError, InvalidQueryError
from visearch.index import Hit, SearchRequest
from visearch.neighbours import load_stats
from visearch.search import SearchEngine
from visearch.search_options import UNUSUAL_NOTICE, SearchResult
from visearch.settings import Settings

ALL = len(TINY_CLASSES) * TINY_PER_CLASS


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def image_of(engine: SearchEngine, result: SearchResult) -> Image.Image:
    return engine.decode(engine.store.get_bytes(result.image_key))


def test_a_filtered_query_returns_only_matching_rows(engine: SearchEngine) -> None:
    query = image_of(engine, engine.examples(TINY, limit=1)[0])
    boots = engine.search(
        TINY, query, k=ALL, filter={"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}
    ).results
    assert len(boots) == TINY_PER_CLASS and {r.captions["article"] for r in boots} == {"Ankle boot"}
    ranged = engine.search(
        TINY,
        query,
        k=ALL,
        filter={
            "must": [{"key": "label", "range": {"gte": 7}}],
            "must_not": [{"key": "class", "match": {"any": ["Bag"]}}],
        },
    ).results
    # Labels: Trouser 1, Dress 3, Sneaker 7, Bag 8, Ankle-boot 9.
    assert len(ranged) == 2 * TINY_PER_CLASS and {r.cls for r in ranged} == {"Sneaker", "Ankle-boot"}
    worded = engine.search(TINY, query, k=ALL, filter={"must": [{"key": "source", "match": {"text": "t10k"}}]}).results
    assert len(worded) == ALL


def test_bad_filters_and_options_are_refused(engine: SearchEngine) -> None:
    query = engine.examples(TINY, limit=1)[0].id
    with pytest.raises(InvalidQueryError) as caught:
        engine.similar(TINY, query, filter={"must": [{"key": "colour", "match": {"value": "red"}}]})
    assert str(caught.value) == "filter.must[0].key: unknown column 'colour'; filterable: article, class, label, source"
    with pytest.raises(InvalidQueryError, match="column 'article' is keyword; text match needs a text column"):
        engine.similar(TINY, query, filter={"must": [{"key": "article", "match": {"text": "boot"}}]})
    with pytest.raises(InvalidQueryError, match="unknown search option"):
        engine.similar(TINY, query, colour="red")
    with pytest.raises(InvalidQueryError, match="offset"):
        engine.similar(TINY, query, offset=-1)
    with pytest.raises(InvalidQueryError, match="group_by_class"):
        engine.similar(TINY, query, group_by_class=True, offset=5)


def test_a_text_query_returns_only_images_whose_captions_hold_the_word(engine: SearchEngine) -> None:
    answer = engine.search_text(TINY, "boots", k=ALL)  # stemmed: matches "Ankle boot"
    assert answer.score_kind == "bm25" and len(answer.results) == TINY_PER_CLASS
    assert all("boot" in r.captions["article"].lower() for r in answer.results)
    assert engine.search_text(TINY, "sneaker", k=3).results[0].cls == "Sneaker"
    with pytest.raises(InvalidQueryError, match="no searchable word"):
        engine.search_text(TINY, "the", k=3)
    with pytest.raises(InvalidQueryError, match=f"category {PLAIN} has no caption columns"):
        engine.search_text(PLAIN, "boot")


def test_hybrid_search_fuses_image_and_text(engine: SearchEngine) -> None:
    bag = next(r for r in engine.examples(TINY, limit=ALL) if r.cls == "Bag")
    answer = engine.search(TINY, image_of(engine, bag), text="dress", k=10)
    assert answer.score_kind == "rrf"
    classes = [r.cls for r in answer.results]
    assert "Dress" in classes and "Bag" in classes  # both lists contribute
    assert all(r.calibrated is None for r in answer.results)  # RRF scores are no similarities


def test_adding_a_negative_example_lowers_the_rank_of_its_class(engine: SearchEngine) -> None:
    examples = engine.examples(TINY, limit=ALL)
    positive = next(r for r in examples if r.cls == "Ankle-boot")
    plain = engine.recommend(TINY, positive_ids=[positive.id], k=ALL).results
    # The class ranked nearest to the positive, other than the positive's own: the one to push away.
    rival = next(r for r in plain if r.cls != positive.cls)
    pushed = engine.recommend(TINY, positive_ids=[positive.id], negative_ids=[rival.id], k=ALL).results

    def mean_rank(results: list[SearchResult]) -> float:
        return float(np.mean([i for i, r in enumerate(results) if r.cls == rival.cls and r.id != rival.id]))

    assert mean_rank(pushed) > mean_rank(plain)
    assert positive.id not in {r.id for r in pushed} and rival.id not in {r.id for r in pushed}
    # An uploaded image as the positive behaves like the stored one (itself found first).
    uploaded = engine.recommend(TINY, positive_images=[image_of(engine, positive)], k=3)
    assert uploaded.results[0].id == positive.id and uploaded.score_kind == "recommend"
    with pytest.raises(InvalidQueryError, match="at least one positive"):
        engine.recommend(TINY, negative_ids=[rival.id])


def test_pages_diversity_and_best_per_class(engine: SearchEngine) -> None:
    query = image_of(engine, engine.examples(TINY, limit=1)[0])
    whole = engine.search(TINY, query, k=12)
    first, second = engine.search(TINY, query, k=6), engine.search(TINY, query, k=6, offset=6)
    assert [r.id for r in first.results + second.results] == [r.id for r in whole.results]
    assert first.next_offset == 6 and second.next_offset == 12
    assert engine.search(TINY, query, k=10, offset=ALL - 5).next_offset is None  # the last, short page

    diverse = engine.search(TINY, query, k=8, diverse=True).results
    assert diverse[0].id == whole.results[0].id and len({r.cls for r in diverse}) >= len(
        {r.cls for r in whole.results[:8]}
    )

    with pytest.raises(InvalidQueryError, match="diverse needs one query image and no text"):
        engine.search(TINY, query, k=8, diverse=True, text="bag")

    with pytest.raises(InvalidQueryError, match="not with both"):
        engine.search(TINY, query, k=8, group_by_class=True, text="bag")

    best = engine.search(TINY, query, k=10, group_by_class=True).results
    assert sorted(r.cls for r in best) == sorted(TINY_CLASSES)
    for result in best:
        assert engine.search(TINY, query, k=1, class_filter=result.cls).results[0].id == result.id


def test_facets_count_keyword_values(engine: SearchEngine) -> None:
    assert dict(engine.facets(TINY, "class")) == dict.fromkeys(TINY_CLASSES, TINY_PER_CLASS)
    bags = engine.facets(TINY, "article", filter={"must": [{"key": "class", "match": {"value": "Bag"}}]})
    assert bags == [("Bag", TINY_PER_CLASS)]
    with pytest.raises(InvalidQueryError, match="keyword column"):
        engine.facets(TINY, "source")


def test_similarity_is_calibrated_and_unusual_queries_are_flagged(engine: SearchEngine) -> None:
    live = engine.live_version(TINY)
    stats = load_stats(engine.store, live.name)
    assert stats is not None and stats.points == ALL and len(stats.quantiles) == 101
    for example in engine.examples(TINY, limit=ALL):  # every image of the category: never unusual
        answer = engine.search(TINY, image_of(engine, example), k=3)
        assert answer.notice is None and answer.results[0].calibrated == 100.0
        assert all(r.calibrated is not None and 0 <= r.calibrated <= 100 for r in answer.results)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for other in (noise, photo(1), photo(2)):  # not a fashion article
        answer = engine.search(TINY, other, k=3)
        assert answer.notice == UNUSUAL_NOTICE
        # Filtered or not, the notice judges the query against the whole category.
        assert engine.search(TINY, other, k=3, class_filter="Bag").notice == UNUSUAL_NOTICE


def test_the_unusual_notice_asks_the_index_again_only_for_a_shaped_page(
    engine: SearchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    searches: list[SearchRequest] = []
    search = engine.index.search

    def counted(collection: str, request: SearchRequest) -> list[Hit]:
        searches.append(request)
        return search(collection, request)

    monkeypatch.setattr(engine.index, "search", counted)
    unusual = photo(1)
    # An unfiltered first page holds the nearest image: its score judges the query, no second query.
    assert engine.search(TINY, unusual, k=3).notice == UNUSUAL_NOTICE
    assert len(searches) == 1
    # A filtered page may not hold it: the nearest of the whole category is asked for.
    searches.clear()
    assert engine.search(TINY, unusual, k=3, class_filter="Bag").notice == UNUSUAL_NOTICE
    assert len(searches) == 2 and searches[1].filter is None and searches[1].limit == 1


def test_vectors_carry_their_model_version(engine: SearchEngine) -> None:
    example = engine.examples(TINY, limit=1)[0]
    data = engine.store.get_bytes(example.image_key)
    [(vector, version)] = engine.embed_many_versioned([(TINY, data)])  # type: ignore[misc]
    assert version == engine.live_version(TINY).model_version
    answer = engine.vector_search(TINY, vector.tolist(), model_version=version, k=3)
    assert answer.results[0].id == example.id and answer.model_version == version
    with pytest.raises(ConflictError, match="embed the image again"):
        engine.vector_search(TINY, vector.tolist(), model_version="0123456789ab", k=3)


def test_duplicates_are_pairs_above_the_threshold(engine: SearchEngine) -> None:
    page = engine.duplicates(TINY, limit=5)
    stats = load_stats(engine.store, engine.live_version(TINY).name)
    assert stats is not None and page.total == len(stats.duplicates) and page.threshold == 0.97
    for pair in page.pairs:
        assert pair.similarity >= 97 and pair.first.id != pair.second.id and pair.first.file
    with pytest.raises(InvalidQueryError, match="limit"):
        engine.duplicates(TINY, limit=0)
