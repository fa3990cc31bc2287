"""The pipeline steps as the components call them (settings from the environment)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from tests.helpers import TINY, env_for


def test_interrupted_embed_resumes_from_its_finished_shards(home, registry, store, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from visearch.categories import TrainParams
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.embed import read_shards
    from visearch.stages.embed import embed_step
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    monkeypatch.chdir(tmp_path)
    for key, value in env_for(home).items():
        if key.startswith("VISEARCH_"):
            monkeypatch.setenv(key, value)
    manifest_dir, _ = run_preprocess(home, store, registry.get(TINY), tmp_path / "manifest", show_progress=False)
    manifest = load_manifest(manifest_dir)
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    version = model.joinpath("meta.json").read_text()
    version = __import__("json").loads(version)["version"]
    # An embed step that died after its first shard: shard on disk, no done.json. Its vectors are
    # zeros, so the output proves the shard was taken over rather than recomputed.
    scratch = home.work_dir / TINY / "embed-scratch" / f"{version}-{manifest_hash(manifest)}"
    scratch.mkdir(parents=True)
    keys = manifest["key"].tolist()
    np.savez(
        scratch / "part-00000.npz",
        keys=np.array(keys),
        vectors=np.zeros((len(keys), 1280), np.float32),
        model=np.array(version),
    )

    out = embed_step(TINY, manifest_dir, model, tmp_path / "embeddings")
    got_keys, vectors, got_version = read_shards(out)
    assert got_keys == keys and got_version == version
    assert not vectors.any()
    assert not scratch.exists()  # the finished shards moved into the step's output


def test_an_interrupted_embed_shard_resumes_in_its_own_scratch(home, registry, store, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Shard 1/2 died after its part was written: the re-run takes that part over and embeds nothing of shard 0."""
    import json

    from visearch.categories import TrainParams
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.embed import read_shards
    from visearch.stages.embed import embed_step
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    monkeypatch.chdir(tmp_path)
    for key, value in env_for(home).items():
        if key.startswith("VISEARCH_"):
            monkeypatch.setenv(key, value)
    manifest_dir, _ = run_preprocess(home, store, registry.get(TINY), tmp_path / "manifest", show_progress=False)
    manifest = load_manifest(manifest_dir)
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    version = json.loads(model.joinpath("meta.json").read_text())["version"]
    keys = manifest["key"].tolist()
    second_half = keys[len(keys) // 2 :]
    scratch = home.work_dir / TINY / "embed-scratch" / f"{version}-{manifest_hash(manifest)}-shard1of2"
    scratch.mkdir(parents=True)
    np.savez(
        scratch / "part-00000.npz",
        keys=np.array(second_half),
        vectors=np.zeros((len(second_half), 1280), np.float32),
        model=np.array(version),
    )

    out = embed_step(TINY, manifest_dir, model, tmp_path / "embeddings-1", shard="1/2")
    got_keys, vectors, got_version = read_shards(out)
    assert got_keys == second_half and got_version == version
    assert not vectors.any()  # taken over, not recomputed
    assert json.loads((out / "done.json").read_text())["shard"] == "1/2"
    assert not scratch.exists()


class PodKilled(Exception):
    """The embed's pod dies: raised in place of a forward pass."""


def test_a_retried_embed_on_a_fresh_filesystem_embeds_only_the_missing_parts(  # type: ignore[no-untyped-def]
    home, registry, store, monkeypatch, tmp_path
) -> None:
    """A Kubeflow retry: new pod, new work folder, new output folder; only the object store is the same.

    The first try dies after one of three parts; the retry starts with no scratch folder, takes that part
    back from the object store (its vectors, zeroed there, come out zero: taken over, not recomputed)
    and runs the forward pass for the two missing parts only. Once the output is complete the store's
    copies are gone.
    """
    import visearch.embed
    from visearch.categories import TrainParams
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.embed import read_shards
    from visearch.model_files import read_spec
    from visearch.stages.embed import EmbedNames, run_embed
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    manifest_dir, _ = run_preprocess(home, store, registry.get(TINY), tmp_path / "manifest", show_progress=False)
    keys = load_manifest(manifest_dir)["key"].tolist()
    assert len(keys) == 40  # 16 + 16 + 8: three parts
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    names = EmbedNames.of(home, TINY, read_spec(model).version, manifest_hash(load_manifest(manifest_dir)), None)
    forward = visearch.embed.embed_paths
    passes: list[int] = []

    def counted(*args, die_after=None, **kwargs):  # type: ignore[no-untyped-def]
        if die_after is not None and len(passes) == die_after:
            raise PodKilled
        passes.append(len(args[1]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(visearch.embed, "embed_paths", lambda *a, **k: counted(*a, die_after=1, **k))
    with pytest.raises(PodKilled):
        run_embed(
            home, store, registry.get(TINY), manifest_dir, model, tmp_path / "try1", part_size=16, show_progress=False
        )
    stored = list(store.list(names.parts_prefix))
    assert passes == [16] and stored == [f"{names.parts_prefix}/part-00000.npz"]
    first = store.local_path(stored[0], tmp_path / "cache")
    with np.load(first) as part:
        store.put_bytes(stored[0], _npz(keys=part["keys"], vectors=np.zeros_like(part["vectors"]), model=part["model"]))
    shutil.rmtree(home.work_dir)  # the retried pod's filesystem is new

    passes.clear()
    monkeypatch.setattr(visearch.embed, "embed_paths", lambda *a, **k: counted(*a, **k))
    out = run_embed(
        home, store, registry.get(TINY), manifest_dir, model, tmp_path / "try2", part_size=16, show_progress=False
    )
    assert passes == [16, 8]  # the two missing parts, nothing of the first
    got_keys, vectors, _ = read_shards(out)
    assert got_keys == keys
    assert not vectors[:16].any() and np.allclose(np.linalg.norm(vectors[16:], axis=1), 1, atol=1e-3)
    assert list(store.list(names.parts_prefix)) == [] and not names.scratch.exists()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_steps_that_compute_no_vectors_start_without_torch(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each step is a fresh process: the shards step and the upsert's model files import no torch (or pandas).

    Nor does the steps module bring the Qdrant client (0.6 s) to the steps that never touch the index.

    Run in a fresh interpreter, as kfp.local runs a step: importing torch there costs seconds a step.
    """
    import json
    import subprocess
    import sys

    from visearch.categories import TrainParams
    from visearch.stages.train import save_baseline

    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    script = f"""
import json, sys
from pathlib import Path
from visearch.entry_context import Context
from visearch.stages.embed import shards_step
shards = shards_step({TINY!r}, 2)
light = sorted(m for m in ("torch", "pandas") if m in sys.modules)
from visearch.model_files import read_spec
from visearch.stages.upsert import publish_model
ctx = Context.from_env()
version = publish_model(ctx.store, {TINY!r}, Path({str(model)!r}))
print(json.dumps({{"shards": shards, "light": light, "torch": "torch" in sys.modules,
                  "qdrant": "qdrant_client" in sys.modules,
                  "version": version, "spec": read_spec(Path({str(model)!r})).version}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env_for(home), capture_output=True, text=True, check=True, timeout=300
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["shards"] == [{"category": TINY, "shard": "0/2"}, {"category": TINY, "shard": "1/2"}]
    assert got["light"] == []
    assert got["torch"] is False
    assert got["qdrant"] is False
    assert got["version"] == got["spec"] and got["version"]
