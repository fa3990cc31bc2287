"""A category that lives only in S3 (a moto server): preprocessed, trained, published and indexed from the bucket."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.servers import s3_settings
from tests.helpers import TINY, make_home
from visearch.categories import load_registry
from visearch.index import open_index
from visearch.index.versions import CollectionVersion
from visearch.search import SearchEngine
from visearch.stages.in_process import run_in_process
from visearch.storage import LocalStore, make_store


@pytest.mark.slow
def test_category_from_s3_is_preprocessed_trained_and_indexed(s3_endpoint: str, tmp_path: Path) -> None:
    """The tiny dataset lives only in the bucket; the loop reads it, publishes models there, indexes it."""
    local = make_home(tmp_path / "home")
    settings = s3_settings(s3_endpoint, local.home, visearch_categories=local.visearch_categories)
    store = make_store(settings)
    for key in LocalStore(local.objects_dir).list("datasets"):
        store.put_file(key, local.objects_dir / key)
    shutil.rmtree(local.objects_dir)  # nothing may come from the local folder

    registry = load_registry(settings.visearch_categories)
    outcome = run_in_process(settings, store, registry.get(TINY), show_progress=False)

    assert not local.objects_dir.exists()
    assert outcome.count == 40
    version = CollectionVersion.parse(outcome.collection).model_version
    assert {k.rsplit("/", 1)[1] for k in store.list(f"models/{TINY}/{version}")} >= {"trunk.pth", "embedder.pth"}
    index = open_index(settings)
    try:
        (pid, payload), *_ = index.sample(index.require_live(TINY).name, 1)
        assert payload["image_uri"].startswith(f"s3://{settings.minio_bucket_name}/team/visearch/datasets/{TINY}/")
        # The service's query path: the model comes from the bucket (through the cache), the
        # result image is read back from the bucket.
        engine = SearchEngine(settings, registry, store, index)
        data, served = engine.image(TINY, pid)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and served["file"] == payload["file"]
        results = engine.search(TINY, data, k=3).results
        assert results[0].id == pid
        cached = settings.home / "cache" / "s3" / settings.minio_bucket_name / "team" / "visearch" / "models" / TINY
        assert any(cached.rglob("*.onnx")) or any(cached.rglob("*.pth"))
    finally:
        index.close()
