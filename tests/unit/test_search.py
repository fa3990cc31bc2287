"""SearchEngine on the indexed tiny category: ONNX search equals torch, batch equals single, parameter guards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from tests.helpers import PHONE_SIZE, TINY, TINY_CLASSES, TINY_PER_CLASS, phone_photo
from tests.unit.homes import search_engine
from visearch.data.transforms import decode_side
from visearch.errors import InvalidImageError, InvalidQueryError, NotFoundError, UnknownCategoryError
from visearch.inference import OnnxEmbedder
from visearch.runtime import stored_image
from visearch.search import SearchEngine
from visearch.settings import Settings


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()  # embedded Qdrant: free the folder for the next module (the service tests)


def test_onnx_backend_is_default_and_search_matches_torch(engine: SearchEngine) -> None:
    assert engine.backend == "onnx"
    assert isinstance(engine.model_for(TINY), OnnxEmbedder)
    torch_engine = SearchEngine(engine.settings, engine.registry, engine.store, engine.index, backend="torch")
    data = engine.store.get_bytes(engine.examples(TINY, limit=1)[0].image_key)
    onnx_results = engine.search(TINY, data, k=8).results
    torch_results = torch_engine.search(TINY, data, k=8).results
    assert [r.id for r in onnx_results] == [r.id for r in torch_results]
    assert [r.score for r in onnx_results] == pytest.approx([r.score for r in torch_results], abs=1e-4)


def test_batch_search_equals_single_searches(engine: SearchEngine) -> None:
    examples = engine.examples(TINY, limit=3)
    images = [engine.decode(engine.store.get_bytes(r.image_key)) for r in examples]
    batch = [answer.results for answer in engine.search_many(TINY, images, k=4)]
    assert len(batch) == 3
    for image, results, example in zip(images, batch, examples, strict=True):
        single = engine.search(TINY, image, k=4).results
        assert [r.id for r in results] == [r.id for r in single]
        assert results[0].id == example.id  # each query image finds itself first


def test_more_like_this_excludes_the_query_and_filters_by_class(engine: SearchEngine) -> None:
    example = engine.examples(TINY, limit=1)[0]
    results = engine.similar(TINY, example.id, k=5, class_filter=example.cls).results
    assert results and example.id not in [r.id for r in results]
    assert {r.cls for r in results} == {example.cls}


def test_categories_report_counts(engine: SearchEngine) -> None:
    infos = {info.name: info for info in engine.categories()}
    assert infos[TINY].image_count == len(TINY_CLASSES) * TINY_PER_CLASS and infos[TINY].indexed
    assert infos[TINY].title and infos[TINY].business_usage
    assert not infos["shoes"].indexed and infos["shoes"].image_count == 0
    assert infos[TINY].index_lag is None  # built for the registry's fields and captions


def test_categories_say_when_the_live_index_lags_a_registry_edit(engine: SearchEngine) -> None:
    """A registry that declares a caption column the live version was not built with: /categories says so."""
    from visearch.categories import Registry

    edited = [
        c.model_copy(update={"captions": [*c.captions, "class"]}) if c.name == TINY else c
        for c in engine.registry.categories
    ]
    lagging = SearchEngine(engine.settings, Registry(categories=edited), engine.store, engine.index)
    info = next(info for info in lagging.categories() if info.name == TINY)
    assert info.index_lag and "next pipeline run builds a new version" in info.index_lag
    assert info.to_dict()["index_lag"] == info.index_lag


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "k must be"),
        ({"k": 10_000}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"min_similarity": 101}, "min_similarity"),
        ({"min_similarity": -1}, "min_similarity"),
        ({"class_filter": "x" * 500}, "class_filter"),
    ],
)
def test_bad_parameters_are_refused(engine: SearchEngine, options: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidQueryError, match=message):
        engine.similar(TINY, engine.examples(TINY, limit=1)[0].id, **options)


def test_bad_inputs_raise_visearch_errors(engine: SearchEngine) -> None:
    with pytest.raises(InvalidImageError):
        engine.search(TINY, b"not an image")
    with pytest.raises(UnknownCategoryError):
        engine.examples("no-such-category")
    with pytest.raises(NotFoundError):
        engine.image(TINY, "../../etc/passwd")
    with pytest.raises(NotFoundError, match="no index"):
        engine.examples("shoes")
    with pytest.raises(InvalidQueryError):
        engine.search_many(TINY, [])


def test_embed_many_isolates_bad_items_and_search_vector_matches(engine: SearchEngine) -> None:
    example = engine.examples(TINY, limit=1)[0]
    data = engine.store.get_bytes(example.image_key)
    outcomes = engine.embed_many_versioned([(TINY, data), (TINY, b"junk"), ("nope", data), (TINY, data)])
    (good, _), bad, unknown, (again, _) = outcomes  # type: ignore[misc]
    assert isinstance(bad, InvalidImageError) and isinstance(unknown, UnknownCategoryError)
    np.testing.assert_allclose(good, again, atol=1e-6)
    by_vector = engine.vector_search(TINY, good.tolist(), k=5).results
    assert [r.id for r in by_vector] == [r.id for r in engine.search(TINY, data, k=5).results]
    with pytest.raises(InvalidQueryError, match="dimensions"):
        engine.vector_search(TINY, [0.1, 0.2], k=5)


def test_phone_photo_query_decodes_at_the_models_scale(engine: SearchEngine) -> None:
    data = phone_photo()
    side = decode_side(engine.model_for(TINY).spec.input_size)
    assert engine.query_side(TINY) == side
    reduced = engine.decode(data, min_side=side)
    assert side <= min(reduced.size) < 2 * side and reduced.width > reduced.height  # upright, not 12 megapixels
    full = engine.decode(data)
    assert full.size == PHONE_SIZE
    [(vector, _)] = engine.embed_many_versioned([(TINY, data)])  # type: ignore[misc] # the REST /embed path
    assert isinstance(vector, np.ndarray)
    assert float(vector @ engine.embed_images(TINY, [full])[0]) > 0.99
    assert engine.search(TINY, data, k=3).results  # the REST /search path answers


def count_alias_reads(engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Alias reads per category from now on: the index backend's own ``alias``, wrapped on this instance."""
    reads: Counter[str] = Counter()
    backend = engine.index.backend
    read = backend.alias

    def counted(name: str) -> str | None:
        reads[name] += 1
        return read(name)

    monkeypatch.setattr(backend, "alias", counted)
    return reads


def test_a_query_by_bytes_reads_the_alias_once_per_category(
    engine: SearchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = engine.examples(TINY, limit=2)
    data, other = engine.store.get_bytes(first.image_key), engine.store.get_bytes(second.image_key)
    reads = count_alias_reads(engine, monkeypatch)

    # The decode size comes from the model of the version the query resolved, not a second read.
    assert engine.search(TINY, data, k=3).results[0].id == first.id
    assert reads == {TINY: 1}
    reads.clear()
    answers = engine.search_many(TINY, [data, other, data], k=3)
    assert [a.results[0].id for a in answers] == [first.id, second.id, first.id] and reads == {TINY: 1}
    reads.clear()
    assert engine.recommend(TINY, positive_images=[data], negative_images=[other], k=3).results
    assert reads == {TINY: 1}
    reads.clear()

    # The /embed batch: one read per category, however many images (and bad ones) it holds.
    outcomes = engine.embed_many_versioned([(TINY, data), (TINY, b"junk"), ("shoes", data), (TINY, other)])
    assert reads == {TINY: 1, "shoes": 1}
    assert isinstance(outcomes[1], InvalidImageError) and isinstance(outcomes[2], NotFoundError)
    live = engine.live_version(TINY).model_version
    assert [o[1] for o in (outcomes[0], outcomes[3]) if isinstance(o, tuple)] == [live, live]


def test_search_by_id_is_more_like_this_and_with_text_a_hybrid_recommend(engine: SearchEngine) -> None:
    example = engine.examples(TINY, limit=1)[0]
    alike = engine.search_by_id(TINY, example.id, k=4, text=None)
    assert [r.id for r in alike.results] == [r.id for r in engine.similar(TINY, example.id, k=4).results]
    assert alike.score_kind == "cosine" and alike.notice is None and example.id not in {r.id for r in alike.results}
    assert [r.id for r in engine.search_by_id(TINY, example.id, k=4, text="").results] == [r.id for r in alike.results]
    hybrid = engine.search_by_id(TINY, example.id, k=4, text="bag")
    expected = engine.recommend(TINY, [example.id], k=4, text="bag")
    assert hybrid.score_kind == "rrf" and [r.id for r in hybrid.results] == [r.id for r in expected.results]
    with pytest.raises(InvalidQueryError, match="diverse"):
        engine.search_by_id(TINY, example.id, text="bag", diverse=True)
    with pytest.raises(NotFoundError):
        engine.search_by_id(TINY, "no-such-id")


def test_search_batch_answers_each_image_in_order_within_the_batch_limit(engine: SearchEngine) -> None:
    examples = engine.examples(TINY, limit=2)
    datas = [engine.store.get_bytes(r.image_key) for r in examples]
    batch = engine.search_batch(TINY, datas, k=3)
    single = [engine.search(TINY, data, k=3) for data in datas]
    assert batch.results == [answer.results for answer in single]
    assert batch.notices == [answer.notice for answer in single]
    assert batch.next_offsets == [3, 3] and batch.model_version == engine.live_version(TINY).model_version
    limit = engine.settings.max_batch_images
    for count in (0, limit + 1):
        with pytest.raises(InvalidQueryError, match=f"a batch holds 1 to {limit} images, got {count}"):
            engine.search_batch(TINY, datas[:1] * count, k=3)


def test_a_stored_image_is_served_with_the_media_type_of_its_file(engine: SearchEngine) -> None:
    example = engine.examples(TINY, limit=1)[0]
    data, media_type = stored_image(engine, TINY, example.id)
    assert data == engine.store.get_bytes(example.image_key) and data.startswith(b"\x89PNG")
    assert example.image_key.endswith(".png") and media_type == "image/png"
    with pytest.raises(NotFoundError):
        stored_image(engine, TINY, "no-such-id")
