"""Index writes: idempotent re-runs, resume after an interrupted upsert, rollback bringing its model."""

from __future__ import annotations

from pathlib import Path

from visearch.categories import TrainParams
from visearch.data.manifest import load_manifest
from visearch.embed import read_shards
from visearch.index import open_index, point_id
from visearch.search import SearchEngine
from visearch.steps import payload_for, run_embed, run_preprocess, run_upsert, save_baseline

from .conftest import TINY


def prepared(home, registry, store, input_size: int) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    category = registry.get(TINY)
    if not (work / "manifest" / "manifest.csv").exists():
        run_preprocess(home, store, category, work / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=input_size), work / f"model-{input_size}")
    embeddings = run_embed(home, store, work / "manifest", model, work / f"emb-{input_size}", show_progress=False)
    return work / "manifest", model, embeddings


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

        partial = index.create(TINY, version_b, manifest_hash(manifest), vectors.shape[1])
        ids = [point_id(TINY, f) for f in manifest["file"]][:10]
        index.upsert(partial.name, ids, vectors[:10], [payload_for(manifest.iloc[i], [], store) for i in range(10)])
        assert index.count(partial.name) == 10
        assert index.live(TINY).name == first.collection  # the live alias did not move
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
