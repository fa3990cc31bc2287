"""Crash and resume of embedding: a killed embed finishes on re-run, keeping its finished shards, and the
index then holds exactly one point per image."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY, env_for, kill9, wait_until
from visearch.categories import TrainParams
from visearch.data.manifest import load_manifest
from visearch.embed import read_shards
from visearch.index import open_index, point_id
from visearch.settings import Settings
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import save_baseline
from visearch.stages.upsert import run_upsert

EMBED_SCRIPT = """
import sys
from pathlib import Path
from visearch.embed import embed_to_shards
from visearch.model import load_model
from visearch.data.manifest import load_manifest
from visearch.storage import LocalStore
manifest = load_manifest(Path(sys.argv[1]))
store = LocalStore(Path(sys.argv[4]))
keys = manifest["key"].tolist()
paths = [store.local_path(key, Path("/nonexistent")) for key in keys]
embed_to_shards(load_model(Path(sys.argv[2])), keys, paths, Path(sys.argv[3]), batch_size=1, shard_size=2,
                show_progress=False)
"""


@pytest.mark.slow
def test_killed_embed_finishes_on_rerun_with_one_point_per_image(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=32), work / "model")
    out = work / "embeddings"
    args = [sys.executable, "-c", EMBED_SCRIPT, str(work / "manifest"), str(model), str(out), str(home.objects_dir)]
    process = subprocess.Popen(args, env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: len(list(out.glob("part-*.npz"))) >= 3)
    kill9(process)
    assert not (out / "done.json").exists()
    finished_before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.npz") if ".tmp" not in p.name}

    subprocess.run(args, env=env_for(home), check=True, timeout=300)
    for name, mtime in finished_before.items():  # finished shards were kept, not recomputed
        assert (out / name).stat().st_mtime_ns == mtime
    keys, vectors, _ = read_shards(out)
    manifest = load_manifest(work / "manifest")
    assert keys == manifest["key"].tolist() and len(vectors) == len(manifest)

    result = run_upsert(home, store, registry.get(TINY), work / "manifest", model, out)
    index = open_index(home)
    try:
        assert index.count(result.collection) == len(manifest) == result.count
    finally:
        index.close()


# --- shards of a category (docs/deploy.md, "8. Scale") ----------------------------------------------
def test_shards_split_the_rows_into_contiguous_ranges_that_cover_each_row_once() -> None:
    from visearch.embed import Shard
    from visearch.errors import InvalidQueryError

    for total in (0, 1, 7, 40):
        for count in (1, 2, 3, 8):
            rows = [row for shard in Shard.all_of(count) for row in shard.rows(total)]
            assert rows == list(range(total))
    assert [len(s.rows(7)) for s in Shard.all_of(3)] == [2, 2, 3]
    assert Shard.parse("1/4") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(InvalidQueryError, match="shard"):
            Shard.parse(bad)


def test_sharded_embeddings_equal_the_whole_and_upsert_joins_them_once(
    home: Settings, registry, store, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from visearch.embed import Shard, read_embeddings
    from visearch.errors import IndexIntegrityError
    from visearch.stages.embed import run_embed

    category = registry.get(TINY)
    manifest_dir, _ = run_preprocess(home, store, category, tmp_path / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    whole = run_embed(home, store, category, manifest_dir, model, tmp_path / "whole", show_progress=False)
    parts = [
        run_embed(
            home, store, category, manifest_dir, model, tmp_path / f"shard-{s.index}", show_progress=False, shard=s
        )
        for s in Shard.all_of(3)
    ]
    keys, vectors, version = read_shards(whole)
    # Handed over in any order (a collected list has none), joined in shard order: the manifest's.
    joined_keys, joined, joined_version = read_embeddings(parts[::-1])
    assert joined_keys == keys and joined_version == version
    np.testing.assert_allclose(joined, vectors, atol=1e-5)
    assert [len(read_shards(p)[0]) for p in parts] == [13, 13, 14]

    # The union must be the whole category, once: a shard missing or given twice is refused.
    with pytest.raises(IndexIntegrityError, match="do not make one whole category"):
        read_embeddings(parts[:2])
    with pytest.raises(IndexIntegrityError, match="given twice"):
        read_embeddings([*parts, parts[0]])
    with pytest.raises(IndexIntegrityError, match="do not make one whole category"):
        read_embeddings([*parts, whole])  # a 0/1 output beside the 3 shards

    result = run_upsert(home, store, category, manifest_dir, model, parts)
    assert result.count == len(keys)
    assert run_upsert(home, store, category, manifest_dir, model, parts[::-1]).reused  # same points, same collection
    manifest = load_manifest(manifest_dir)
    ids = [point_id(TINY, str(file)) for file in manifest["file"]]
    index = open_index(home)
    try:
        assert index.count(result.collection) == len(keys)
        records = index.backend.retrieve(result.collection, ids, with_payload=True, with_vector=True)
    finally:
        index.close()
    # Each image's point holds the vector the unsharded embed gave it.
    stored = {r.payload["image_key"]: r.vector for r in records}
    assert sorted(stored) == sorted(keys)
    np.testing.assert_allclose([stored[key] for key in keys], vectors, atol=1e-5)


def test_more_shards_than_images_leaves_some_empty(home: Settings, registry, store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from visearch.data.manifest import MANIFEST
    from visearch.embed import Shard, read_embeddings
    from visearch.stages.embed import run_embed

    manifest_dir, _ = run_preprocess(home, store, registry.get(TINY), tmp_path / "manifest", show_progress=False)
    one = tmp_path / "one"
    one.mkdir()
    load_manifest(manifest_dir).iloc[:1].to_csv(one / MANIFEST, index=False)
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    parts = [
        run_embed(
            home, store, registry.get(TINY), one, model, tmp_path / f"shard-{s.index}", show_progress=False, shard=s
        )
        for s in Shard.all_of(2)
    ]
    assert read_shards(parts[0])[0] == []
    keys, vectors, _ = read_embeddings(parts)
    assert keys == load_manifest(one)["key"].tolist() and vectors.shape[0] == 1


def test_photos_decode_in_worker_processes_small_files_in_the_step(tmp_path, capfd) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import jpeg, phone_photo
    from visearch.embed import DECODE_BOUND_BYTES, SHARED_MEMORY_BUDGET, batch_bytes, embed_paths, loader_workers
    from visearch.model import create_model

    photos = []
    for index in range(3):
        path = tmp_path / f"photo-{index}.jpg"
        path.write_bytes(phone_photo(quality=78 + index))
        photos.append(path)
    thumbnail = tmp_path / "thumbnail.jpg"
    thumbnail.write_bytes(jpeg(Image.new("RGB", (28, 28), (200, 30, 30))))
    assert all(path.stat().st_size > DECODE_BOUND_BYTES for path in photos)
    # By the median size: photos get worker processes (one per core, at most 4), thumbnails none.
    assert 1 <= loader_workers(photos) <= 4
    # As many as have their two batches in flight fit half of a container's 64 MB /dev/shm.
    assert batch_bytes(32, 96) == 32 * 3 * 96 * 96 * 4  # float32 RGB
    assert 1 <= loader_workers(photos, batch_bytes(32, 96)) <= 4
    assert loader_workers(photos, SHARED_MEMORY_BUDGET // 2) == 1
    assert loader_workers(photos, batch_bytes(32, 224)) == 0
    assert loader_workers([thumbnail] * 3) == 0
    assert loader_workers([*photos[:1], thumbnail, thumbnail]) == 0
    assert loader_workers([tmp_path / "missing.jpg"]) == 0 and loader_workers([]) == 0
    # Decoded in worker processes (chosen by size: evaluate and the duplicate finder too) or in the
    # step, the photos embed the same.
    model = create_model("efficientnet-lite0", [16], 32).eval()
    in_workers = embed_paths(model, [*photos, thumbnail], batch_size=2)
    assert f"({loader_workers(photos)} decoding processes)" in capfd.readouterr().err
    in_step = embed_paths(model, [*photos, thumbnail], batch_size=2, workers=0)
    assert "decoding processes" not in capfd.readouterr().err
    np.testing.assert_allclose(in_workers, in_step, atol=1e-6)


def test_the_embed_step_takes_its_decoding_processes_from_the_settings(  # type: ignore[no-untyped-def]
    home: Settings, registry, store, tmp_path, capfd
) -> None:
    from visearch.stages.embed import run_embed

    manifest_dir, _ = run_preprocess(home, store, registry.get(TINY), tmp_path / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    # The tiny category's small files decode in the step unless EMBED_WORKERS asks for processes.
    auto = read_shards(run_embed(home, store, registry.get(TINY), manifest_dir, model, tmp_path / "auto"))
    assert "decoding processes" not in capfd.readouterr().err
    two = home.model_copy(update={"embed_workers": 2})
    given = read_shards(run_embed(two, store, registry.get(TINY), manifest_dir, model, tmp_path / "given"))
    assert "(2 decoding processes)" in capfd.readouterr().err
    assert given[0] == auto[0]
    np.testing.assert_allclose(given[1], auto[1], atol=1e-6)
