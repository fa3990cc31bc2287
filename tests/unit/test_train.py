"""Crash and resume: a killed embed finishes on re-run without duplicates; training resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from visearch.categories import TrainParams
from visearch.data.manifest import load_manifest
from visearch.embed import read_shards
from visearch.index import open_index
from visearch.settings import Settings
from visearch.steps import run_preprocess, run_train, run_upsert, save_baseline

from .conftest import TINY, env_for

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


def wait_for(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def kill9(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.slow
def test_killed_embed_finishes_on_rerun_with_one_point_per_image(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=32), work / "model")
    out = work / "embeddings"
    args = [sys.executable, "-c", EMBED_SCRIPT, str(work / "manifest"), str(model), str(out), str(home.objects_dir)]
    process = subprocess.Popen(args, env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(list(out.glob("part-*.npz"))) >= 3)
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


def test_longer_training_continues_from_the_checkpoint(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    params = registry.get(TINY).train.model_copy(update={"max_steps": None, "epochs": 1})
    first = run_train(home, store, work / "manifest", params, work / "train", show_progress=False, onnx=False)
    epochs_run: list[int] = []
    longer = params.model_copy(update={"epochs": 2})
    second = run_train(
        home,
        store,
        work / "manifest",
        longer,
        work / "train",
        show_progress=False,
        onnx=False,
        on_epoch=lambda epoch, loss: epochs_run.append(epoch),
    )
    assert epochs_run == [1]  # only the missing epoch ran
    assert second.epoch_losses[0] == first.epoch_losses[0] and len(second.epoch_losses) == 2


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    command = [sys.executable, "-m", "visearch.cli", "train", "-c", TINY, "--max-steps", "100000"]
    process = subprocess.Popen(
        [*command, "--epochs", "500"], env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = work / "train" / "checkpoint.pt"
    wait_for(checkpoint.exists, timeout=240)
    kill9(process)
    import torch

    done = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    rerun = subprocess.run(
        [*command, "--epochs", str(done + 1)], env=env_for(home), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming training from epoch {done}" in rerun.stderr
    assert (work / "train" / "model" / "meta.json").exists()
