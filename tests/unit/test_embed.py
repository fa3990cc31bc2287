"""Crash and resume of embedding: a killed embed finishes on re-run, keeping its finished shards, and the
index then holds exactly one point per image."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import TINY, env_for, kill9, wait_until
from visearch.categories import TrainParams
from visearch.data.manifest import load_manifest
from visearch.embed import read_shards
from visearch.index import open_index
from visearch.settings import Settings
from visearch.steps import run_preprocess, run_upsert, save_baseline

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
