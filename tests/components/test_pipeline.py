"""The Kubeflow pipeline: compiled YAML, and whole local runs (kfp.local) on real engines.

The local runs are the product's main job on the tiny real-image category: MLflow on SQLite,
the embedded Qdrant engine and the local object store, all under a temporary data home. Each
component's own function, called directly: the other modules of tests/components/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS, env_for
from visearch.settings import Settings

STEPS = {"preprocess", "train", "evaluate", "embed", "upsert"}
SEED_PARAMS = {
    "trunk_model",
    "embedder_layers",
    "split",
    "batch_size",
    "epochs",
    "lr",
    "weight_decay",
    "sampler_m",
    "input_size",
}


# --- compile -----------------------------------------------------------------------------------
def test_compiled_pipeline_runs_five_steps_per_category_in_a_parallel_for(tmp_path: Path) -> None:
    from visearch.cli.pipeline import pipeline_app

    image = "registry.example.com/visearch-train:1.2.3"
    output = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(pipeline_app, ["compile", "--output", str(output), "--image", image])
    assert result.exit_code == 0, result.output
    # Two YAML documents: the pipeline spec, then the Kubernetes platform spec (kfp.kubernetes).
    spec, platform = yaml.safe_load_all(output.read_text(encoding="utf-8"))

    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["categories"]["parameterType"] == "LIST" and "defaultValue" not in inputs["categories"]
    assert set(inputs) >= SEED_PARAMS | {"patience", "max_steps", "train_images_per_class"}
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--categories"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4

    tasks = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(tasks) == STEPS - {"embed"} | {"shards", "for-loop-2"}
    # Every training parameter reaches the preprocess step, which resolves them once for the later steps.
    given = tasks["preprocess"]["inputs"]["parameters"]
    for name in ("patience", "trunk_lr_scale", "seed", "holdout", "loss"):
        assert given[name]["componentInputParameter"] == f"pipelinechannel--{name}"
    depends = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert depends == {
        "preprocess": set(),
        "train": {"preprocess"},
        "evaluate": {"preprocess", "train"},
        "shards": set(),
        "for-loop-2": {"preprocess", "evaluate", "shards"},
        "upsert": {"preprocess", "evaluate", "for-loop-2"},
    }
    # The embed step fans out over the shards the `shards` step lists (the pipeline's embed_shards,
    # else the registry's), one item {category, shard} each; the upsert collects every shard's output.
    assert (
        inputs["embed_shards"].items()
        >= {"defaultValue": -1.0, "isOptional": True, "parameterType": "NUMBER_INTEGER"}.items()
    )
    assert "keeps the registry's value" in inputs["embed_shards"]["description"]
    fan_out = tasks["for-loop-2"]
    assert fan_out["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--shards-Output"
    assert fan_out["inputs"]["parameters"]["pipelinechannel--shards-Output"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "shards",
    }
    shard_loop = spec["components"]["comp-for-loop-2"]["dag"]
    embed = shard_loop["tasks"]["embed"]
    item = "pipelinechannel--shards-Output-loop-item"
    assert {name: p["componentInputParameter"] for name, p in embed["inputs"]["parameters"].items()} == {
        "category": item,
        "shard": item,
    }
    assert shard_loop["outputs"]["artifacts"]["pipelinechannel--embed-embeddings"]["artifactSelectors"] == [
        {"outputArtifactKey": "embeddings", "producerSubtask": "embed"}
    ]
    collected = tasks["upsert"]["inputs"]["artifacts"]["embeddings"]["taskOutputArtifact"]
    assert collected == {"outputArtifactKey": "pipelinechannel--embed-embeddings", "producerTask": "for-loop-2"}
    assert spec["components"]["comp-upsert"]["inputDefinitions"]["artifacts"]["embeddings"]["isArtifactList"]
    # The embed/upsert steps index the gate's champion, not the freshly trained model.
    champion = fan_out["inputs"]["artifacts"]["pipelinechannel--evaluate-champion"]["taskOutputArtifact"]
    assert champion == {"outputArtifactKey": "champion", "producerTask": "evaluate"}
    assert embed["inputs"]["artifacts"]["model"] == {"componentInputArtifact": "pipelinechannel--evaluate-champion"}
    steps = [task for name, task in tasks.items() if name != "for-loop-2"] + [embed]
    assert all(not task["cachingOptions"].get("enableCache", False) for task in steps)

    executors = spec["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == STEPS | {"shards"}
    assert {executor["container"]["image"] for executor in executors.values()} == {image}
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["champion"]["artifactType"]["schemaTitle"] == "system.Model"

    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(kubernetes) == set(executors)
    for config in kubernetes.values():
        assert config["secretAsEnv"][0]["secretName"] == "visearch-secrets"
        assert config["configMapAsEnv"][0]["configMapName"] == "visearch-config"


def test_committed_pipeline_yaml_is_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pipelines/visearch-pipeline.yaml (which the k8s manifests use) equals a fresh compile."""
    from pipelines.visearch_pipeline import COMPILED, compile_pipeline

    monkeypatch.delenv("TRAIN_IMAGE", raising=False)
    monkeypatch.delenv("VISEARCH_TRAIN_IMAGE", raising=False)
    from visearch.categories import load_registry

    fresh = compile_pipeline(tmp_path / "fresh.yaml", Settings(_env_file=None).train_image, load_registry().categories)
    assert COMPILED.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        "pipelines/visearch-pipeline.yaml is stale: run `python -m pipelines.visearch_pipeline`"
    )


# --- whole local runs ----------------------------------------------------------------------------
def add_broken_image(settings: Settings) -> None:
    """One row whose image does not decode: preprocess reports it, nothing indexes it."""
    folder = settings.objects_dir / "datasets" / TINY
    (folder / "images" / "Bag" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    meta = pd.read_csv(folder / "meta.csv", index_col=0)
    row = meta[meta["class"] == "Bag"].iloc[[0]].assign(file="Bag/broken.png")
    pd.concat([meta, row], ignore_index=True).to_csv(folder / "meta.csv")


def run_cli(settings: Settings, cwd: Path, *options: str) -> str:
    command = [sys.executable, "-m", "visearch.cli", "pipeline", "run", "--categories", TINY, *options]
    done = subprocess.run(command, cwd=cwd, env=env_for(settings), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return done.stdout


@pytest.mark.slow
def test_pipeline_run_tracks_gates_indexes_and_is_idempotent(home: Settings, tmp_path: Path) -> None:
    from visearch.index import open_index
    from visearch.storage import LocalStore
    from visearch.tracking import CHAMPION, VERSION_TAG, Tracker, experiment_name, model_name

    add_broken_image(home)
    valid_images = len(TINY_CLASSES) * TINY_PER_CLASS
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = run_cli(home, cwd)

    # One status line per step (the gate's decision, the live index), kfp's whole log in the file it names.
    (log,) = {Path(line.split("full log: ")[1]) for line in out.splitlines() if line.startswith("full log: ")}
    assert log.parent == home.home / "kfp" and "Got executor_input" in log.read_text(encoding="utf-8")
    steps = [line.split()[:2] for line in out.splitlines() if line.startswith(f"  {TINY} ")]
    assert steps == [[TINY, step] for step in ("preprocess", "train", "evaluate", "shards", "embed", "upsert")], out
    assert "  gate: " in out and "index: alias -> " in out and "executor_input" not in out
    # Where the artifacts landed is printed, and they are there.
    assert "pipeline run folder:" in out
    for step in (
        "preprocess/manifest",
        "train/model",
        "train/baseline",
        "evaluate/champion",
        "evaluate/report",
        "embed/embeddings",
    ):
        line = next(line for line in out.splitlines() if line.strip().startswith(step))
        assert Path(line.split()[-1]).exists(), line
    assert not list(cwd.iterdir())  # nothing lands in the working directory (mlruns, mlflow.db)

    # MLflow: one finished run with params, per-epoch loss, final metrics and artifacts.
    tracker = Tracker.from_settings(home)
    experiment = tracker.client.get_experiment_by_name(experiment_name(TINY))
    (run,) = tracker.client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert SEED_PARAMS | {"dataset_size", "split_seed", "max_steps"} <= set(params)
    assert params["dataset_size"] == str(valid_images) and params["dataset_dropped"] == "1"
    assert tracker.client.get_metric_history(run.info.run_id, "loss")
    for model in ("baseline", "tuned"):
        for evaluation in ("in_domain", "class_disjoint"):
            for metric in ("precision_at_1", "mean_average_precision_at_r", "r_precision", "recall_at_10"):
                assert f"{model}.{evaluation}.{metric}" in run.data.metrics
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/embedding_map.png"} <= artifacts
    # Both candidates are MLflow models of the run (pyfunc; their files under artifacts/).
    logged = {m.name: m for m in tracker.client.search_logged_models([experiment.experiment_id])}
    assert set(logged) == {"model", "baseline"}
    outputs = tracker.client.get_run(run.info.run_id).outputs.model_outputs
    assert {o.model_id for o in outputs} == {m.model_id for m in logged.values()}
    files = {a.path for a in tracker.client.list_logged_model_artifacts(logged["model"].model_id, "artifacts")}
    assert {f"artifacts/{name}" for name in ("trunk.pth", "embedder.pth", "meta.json", "model.onnx")} <= files
    assert run.data.tags["gate.decision"] == "promoted"

    # Registry: the champion alias maps to the model that serves the live collection.
    champion = tracker.client.get_model_version_by_alias(model_name(TINY), CHAMPION)
    model_version = champion.tags[VERSION_TAG]
    versions = tracker.client.search_model_versions(f"name='{model_name(TINY)}'")

    # Qdrant: alias -> a collection of that model with one point per valid image.
    index = open_index(home)
    try:
        live = index.require_live(TINY)
        assert live.model_version == model_version
        assert index.count(live.name) == valid_images
    finally:
        index.close()
    assert LocalStore(home.objects_dir).exists(f"models/{TINY}/{model_version}/trunk.pth")

    # Re-run on the same data: same model, no new registry version, the same live collection.
    run_cli(home, cwd)
    runs = tracker.client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    assert len(runs) == 2
    assert runs[0].data.tags["gate.decision"] == "kept" and runs[0].data.tags["index.reused"] == "True"
    assert len(tracker.client.search_model_versions(f"name='{model_name(TINY)}'")) == len(versions)
    assert len(tracker.client.search_logged_models([experiment.experiment_id])) == len(logged)
    assert tracker.client.get_model_version_by_alias(model_name(TINY), CHAMPION).version == champion.version
    index = open_index(home)
    try:
        assert [v.name for v in index.versions(TINY)] == [live.name]
        assert index.require_live(TINY).name == live.name and index.count(live.name) == valid_images
    finally:
        index.close()


def artifact(out: str, name: str) -> Path:
    """The folder ``visearch pipeline run`` printed for the artifact ``name`` (e.g. ``embed[0]/embeddings``)."""
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [name]]
    return Path(line.split()[-1])


@pytest.mark.slow
def test_two_embed_shards_index_the_same_points_and_vectors_as_one(home: Settings, tmp_path: Path) -> None:
    """The embed step fanned out over 2 shards (kfp.local), then the same data on 1: equal vectors, one collection."""
    import numpy as np

    from visearch.data.manifest import load_manifest
    from visearch.embed import read_embeddings, read_shards
    from visearch.index import open_index, point_id

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    quick = ("--max-steps", "1", "--epochs", "1", "--input-size", "32")
    two = run_cli(home, cwd, *quick, "--embed-shards", "2")
    one = run_cli(home, cwd, *quick)  # the registry's embed_shards: 1

    keys, vectors, version = read_shards(artifact(one, "embed/embeddings"))
    assert keys == load_manifest(artifact(one, "preprocess/manifest"))["key"].tolist()
    shards = [artifact(two, f"embed[{i}]/embeddings") for i in range(2)]
    halves = [read_shards(path)[0] for path in shards]
    assert halves[0] + halves[1] == keys and all(halves)  # each pod embedded its own half
    joined_keys, joined, joined_version = read_embeddings(shards)
    assert joined_keys == keys and joined_version == version
    np.testing.assert_allclose(joined, vectors, atol=1e-5)

    # The one-shard run found the collection the two shards built complete: same model, same data.
    (live,) = {line.split()[-1] for line in two.splitlines() if line.startswith("tiny:  MLflow run")}
    assert "reused=True" in one and f"alias -> {live}" in one
    manifest = load_manifest(artifact(one, "preprocess/manifest"))
    index = open_index(home)
    try:
        assert index.require_live(TINY).name == live and index.count(live) == len(keys)
        ids = [point_id(TINY, str(file)) for file in manifest["file"]]
        stored = {
            r.payload["image_key"]: r.vector
            for r in index.backend.retrieve(live, ids, with_payload=True, with_vector=True)
        }
    finally:
        index.close()
    np.testing.assert_allclose([stored[key] for key in keys], vectors, atol=1e-5)
