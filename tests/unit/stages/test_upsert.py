"""Index writes: idempotent re-runs, resume after an interrupted upsert, rollback bringing its model;
an upsert whose object store is down leaves the live collection alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.servers import Moto, s3_settings
from tests.helpers import TINY, closed_url, copy_home, live_state, prepared
from tests.unit.cli.runs import one_error_line, visearch_cli
from tests.unit.homes import home_digest
from visearch.categories import load_registry
from visearch.data.manifest import MANIFEST, load_manifest
from visearch.embed import read_shards
from visearch.errors import EngineUnavailableError, IndexIntegrityError
from visearch.index import open_index, point_id
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.stages.upsert import payload_for, run_upsert
from visearch.storage import make_store


def test_upsert_is_idempotent_resumable_and_rolls_back(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    category = registry.get(TINY)
    manifest_dir, model_a, emb_a = prepared(home, registry, store, 32)
    n_images = len(load_manifest(manifest_dir))

    first = run_upsert(home, store, category, manifest_dir, model_a, emb_a)
    assert first.count == n_images and first.previous is None
    again = run_upsert(home, store, category, manifest_dir, model_a, emb_a)
    assert again.collection == first.collection and again.count == n_images

    # A second model whose upsert was interrupted after 10 points: the re-run finishes it.
    _, model_b, emb_b = prepared(home, registry, store, 48)
    keys, vectors, version_b = read_shards(emb_b)
    manifest = load_manifest(manifest_dir)
    index = open_index(home)
    try:
        from visearch.data.manifest import manifest_hash
        from visearch.index.versions import schema_hash

        schema = schema_hash(category.fields, category.captions)
        partial = index.create(TINY, version_b, manifest_hash(manifest), vectors.shape[1], category.fields, schema)
        ids = [point_id(TINY, f) for f in manifest["file"]][:10]
        index.upsert(partial.name, ids, vectors[:10], [payload_for(manifest.iloc[i], [], store) for i in range(10)])
        assert index.count(partial.name) == 10
        assert index.live(TINY).name == first.collection  # only run_upsert moves it: see the next test
        resumed = run_upsert(home, store, category, manifest_dir, model_b, emb_b, index=index)
        assert resumed.collection == partial.name and resumed.count == n_images
        assert resumed.previous == first.collection
        assert index.live(TINY).name == partial.name

        engine = SearchEngine(home, registry, store, index)
        assert engine.model_for(TINY).spec.version == version_b
        rolled = index.rollback(TINY)
        assert rolled.name == first.collection
        # The query path follows the alias and loads the model that produced those vectors.
        assert engine.model_for(TINY).spec.input_size == 32
        names = index.backend.collections()
        assert sorted(names) == sorted([first.collection, partial.name])
    finally:
        index.close()


def test_upsert_refuses_a_short_count_or_foreign_embeddings_and_keeps_the_live_alias(  # type: ignore[no-untyped-def]
    home, registry, store, tmp_path: Path
) -> None:
    """The two integrity guards of ``run_upsert``: nothing goes live unless every point landed."""
    category = registry.get(TINY)
    manifest_dir, model_a, emb_a = prepared(home, registry, store, 32)
    first = run_upsert(home, store, category, manifest_dir, model_a, emb_a)
    _, model_b, emb_b = prepared(home, registry, store, 48)

    # An engine that acknowledges a write but loses its last point: the real embedded index,
    # whose count then comes back one short of the manifest.
    index = open_index(home)
    real_upsert = index.backend.upsert

    def lossy_upsert(collection, points, batch_size):  # type: ignore[no-untyped-def]
        real_upsert(collection, points[:-1], batch_size)

    index.backend.upsert = lossy_upsert  # type: ignore[method-assign]
    try:
        with pytest.raises(IndexIntegrityError, match="expected .*alias not swapped"):
            run_upsert(home, store, category, manifest_dir, model_b, emb_b, index=index)
        assert index.live(TINY).name == first.collection  # the live alias did not move
        unfinished = [v.name for v in index.versions(TINY) if v.name != first.collection]
        assert len(unfinished) == 1 and index.count(unfinished[0]) == len(load_manifest(manifest_dir)) - 1
    finally:
        index.close()

    # Embeddings of other images than the manifest lists: refused before anything is written.
    manifest = load_manifest(manifest_dir)
    other = tmp_path / "other-manifest"
    other.mkdir()
    manifest.iloc[1:].to_csv(other / MANIFEST, index=False)
    before = live_state(home)
    assert before[0].name == first.collection
    with pytest.raises(IndexIntegrityError, match="does not match the manifest"):
        run_upsert(home, store, category, other, model_b, emb_b)
    assert live_state(home) == before


@pytest.mark.slow
def test_upsert_step_fails_clearly_when_the_object_store_is_down(
    indexed_home: Settings, moto: Moto, tmp_path: Path
) -> None:
    """Down before the step (the CLI) and between steps (in process): one message, live untouched."""
    copy = copy_home(indexed_home, tmp_path / "home")
    before = live_state(copy)
    assert before[0] is not None
    files = home_digest(copy)

    down = s3_settings(closed_url().removeprefix("http://"), copy.home, visearch_categories=copy.visearch_categories)
    result, _ = visearch_cli(down, "upsert", "--category", TINY)
    assert "object store unreachable" in one_error_line(result)
    assert live_state(copy) == before

    # Up when the step built its store, down when it publishes the model: the alias is not touched.
    settings = s3_settings(moto.endpoint, copy.home, visearch_categories=copy.visearch_categories)
    store = make_store(settings)
    moto.stop()
    work = copy.work_dir / TINY
    with pytest.raises(EngineUnavailableError, match="object store unreachable"):
        run_upsert(
            settings,
            store,
            load_registry(copy.visearch_categories).get(TINY),
            work / "manifest",
            work / "champion",
            work / "embeddings",
        )
    assert live_state(copy) == before
    assert home_digest(copy) == files


def test_payload_values_take_the_kind_their_field_declares(tmp_path: Path) -> None:
    """A CSV column with an empty cell reads as text: a declared integer is still stored as one (range filters)."""
    import pandas as pd

    from visearch.storage import LocalStore

    row = pd.Series(
        {"file": "a.jpg", "class": "x", "label": 0, "key": "k/a.jpg", "year": "1924", "size": "", "code": 7, "w": "2.5"}
    )
    fields = {"year": "integer", "size": "integer", "code": "keyword", "w": "float"}
    payload = payload_for(row, ["year", "size", "code", "w"], LocalStore(tmp_path), fields)
    assert (payload["year"], payload["size"], payload["code"], payload["w"]) == (1924, None, "7", 2.5)
    assert payload_for(row, ["year"], LocalStore(tmp_path))["year"] == "1924"  # undeclared: as read


def test_a_registry_edit_to_fields_or_captions_builds_a_new_version(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    """Same model and data, other fields/captions: not reused; the new version filters and finds the new columns."""
    from visearch.categories import Registry
    from visearch.stages.upsert import index_lag

    bare = registry.get(TINY).model_copy(update={"fields": {}, "captions": []})
    manifest_dir, model, embeddings = prepared(home, registry, store, 32)
    first = run_upsert(home, store, bare, manifest_dir, model, embeddings)
    assert run_upsert(home, store, bare, manifest_dir, model, embeddings).reused  # nothing changed: reused

    declared = registry.get(TINY)  # fields {article: keyword, source: text}, captions [article, source]
    index = open_index(home)
    try:
        lag = index_lag(index, declared)
        assert lag and first.collection in lag and "next pipeline run" in lag
        assert index_lag(index, bare) is None
        second = run_upsert(home, store, declared, manifest_dir, model, embeddings, index=index)
        assert not second.reused and second.collection != first.collection and second.previous == first.collection
        assert index_lag(index, declared) is None
        engine = SearchEngine(home, Registry(categories=[declared]), store, index)
        article = load_manifest(manifest_dir)["article"].iloc[0]
        found = engine.search(TINY, text=str(article), k=5).results
        assert found and all(hit.captions["article"] == article for hit in found)
        flt = {"must": [{"key": "article", "match": {"value": article}}]}
        assert engine.search(TINY, text=str(article), k=5, filter=flt).results
        # Back to the old declaration: the kept version with that schema is live again, nothing rebuilt.
        third = run_upsert(home, store, bare, manifest_dir, model, embeddings, index=index)
        assert third.collection == first.collection
    finally:
        index.close()
