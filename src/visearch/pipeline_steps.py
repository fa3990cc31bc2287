"""Pipeline steps as the kfp components call them: settings from the environment, MLflow tracked.

Each function is one component's whole body: build the context from the environment, apply the
pipeline's overrides to the category's training parameters (``TrainParams.with_overrides``), call
the step in ``visearch.steps`` and track it in the category's MLflow run. The components translate
kfp's "unset" values (-1, empty) to ``None`` before they call these.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visearch.context import Context
from visearch.embed import Shard
from visearch.errors import ConfigError

# Every step is a fresh process: the steps module (pandas, PIL, the data checks) is imported by
# the steps that use it, so the shards step starts in a fraction of a second.
if TYPE_CHECKING:
    from visearch.gate import GateOutcome
    from visearch.settings import Settings
    from visearch.steps import UpsertResult
    from visearch.storage import ObjectStore
    from visearch.train import TrainResult


def pipeline_preprocess(
    category: str, manifest_dir: Path, *, overrides: dict[str, Any] | None = None, pipeline_run: str = ""
) -> str:
    """Step 1: start the category's MLflow run, validate and split; returns the MLflow run id."""
    from visearch.steps import run_preprocess

    ctx = Context.from_env()
    cat = ctx.registry.get(category)
    tracker = ctx.tracker()
    run = tracker.run(tracker.start_run(category, tags={"kfp.run": pipeline_run} if pipeline_run else None))
    with run.failing():
        run_preprocess(ctx.settings, ctx.store, cat, manifest_dir, params=cat.train.with_overrides(overrides), run=run)
    return run.run_id


def pipeline_train(
    category: str,
    manifest_dir: Path,
    run_id: str,
    model_dir: Path,
    baseline_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Step 2: fine-tune (model → ``model_dir``) and save the frozen trunk (→ ``baseline_dir``): two candidates.

    Resumes from its checkpoint after a kill; reuses the model trained on the same data with the
    same params (and epochs) instead of training again.
    """
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.model_files import copy_model
    from visearch.steps import publish_model, run_train, save_baseline
    from visearch.train import TrainResult

    ctx = Context.from_env()
    params = ctx.registry.get(category).train.with_overrides(overrides)
    run = ctx.tracker().run(run_id)
    # A stable scratch folder (and a copy of the checkpoint in the object store) named by the
    # params and the data: a step killed mid-training resumes from its last epoch when re-run.
    # Checkpoints stay out of the output artifact: only the model files are the step's output.
    identity = f"{params.identity()}-{manifest_hash(load_manifest(manifest_dir))}"
    scratch = ctx.settings.work_dir / category / "train-scratch" / identity
    checkpoint_key = f"checkpoints/{category}/{identity}/checkpoint.pt"
    # Trained before with the same params, epochs, patience and data: that model, not a second training.
    length = f"epochs{params.epochs}-patience{params.patience}-steps{params.max_steps or 0}"
    trained_key = f"trained/{category}/{identity}-{length}.json"
    with run.failing():
        reused = reuse_trained(ctx.store, ctx.settings, category, trained_key, model_dir)
        if reused is not None:
            print(f"train {category}: reusing model {reused}, trained on the same data with the same params")
            run.set_tags({"train.reused": reused})
            result = TrainResult(model_dir, reused)
        else:
            result = run_train(
                ctx.settings, ctx.store, manifest_dir, params, scratch, run=run, checkpoint_key=checkpoint_key
            )
            copy_model(result.model_dir, model_dir)
            result.model_dir = model_dir
            publish_model(ctx.store, category, model_dir)
            ctx.store.put_bytes(trained_key, json.dumps({"model_version": result.version}).encode())
        save_baseline(params, baseline_dir, onnx=True)  # both reach MLflow as models at the gate
    # Trained and recorded: the checkpoint has done its job.
    ctx.store.delete(checkpoint_key)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def reuse_trained(
    store: ObjectStore, settings: Settings, category: str, trained_key: str, model_dir: Path
) -> str | None:
    """Copy the model a pointer names into ``model_dir`` and return its version; None if there is none (or it was pruned)."""
    from visearch.data.manifest import cache_dir
    from visearch.model_files import WEIGHT_FILES, model_files, store_key

    if not store.exists(trained_key):
        return None
    version = str(json.loads(store.get_bytes(trained_key))["model_version"])
    if not all(store.exists(store_key(category, version, name)) for name in WEIGHT_FILES):
        return None  # retention deleted it: train again
    model_dir.mkdir(parents=True, exist_ok=True)
    for key in store.list(store_key(category, version)):
        shutil.copyfile(store.local_path(key, cache_dir(settings)), model_dir / key.rsplit("/", 1)[1])
    return version if model_files(model_dir) else None


def pipeline_evaluate(
    category: str,
    manifest_dir: Path,
    run_id: str,
    model_dir: Path,
    baseline_dir: Path,
    report_dir: Path,
    champion_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
) -> GateOutcome:
    """Step 3: evaluate both candidates and the champion; the gate decides which model to index.

    ``overrides``: training parameters that change the evaluation (``eval_images_per_class``).
    """
    from visearch.gate import FROZEN, TUNED, evaluate_and_gate

    ctx = Context.from_env()
    entry = ctx.registry.get(category)
    entry = entry.model_copy(update={"train": entry.train.with_overrides(overrides)})
    tracker = ctx.tracker()
    run = tracker.run(run_id)
    with run.failing():
        outcome = evaluate_and_gate(
            ctx.settings,
            ctx.store,
            entry,
            manifest_dir,
            {TUNED: model_dir, FROZEN: baseline_dir},
            report_dir,
            champion_dir,
            tracker=tracker,
            run=run,
        )
    print(f"gate for {category}: {outcome.decision.reason}")  # the run says why, in its log
    return outcome


def pipeline_shards(category: str, count: int | None = None) -> list[dict[str, str]]:
    """The embed step's fan-out: one ``{"category", "shard": "i/n"}`` item per shard.

    ``count``: the pipeline's ``embed_shards``; None takes the category's registry value. The
    category rides in each item: the loop over shards runs inside the loop over categories.
    """
    ctx = Context.from_env()
    count = ctx.registry.get(category).embed_shards if count is None else count
    if count < 1:
        raise ConfigError(f"embed_shards must be 1 or more (1 = one embed pod), got {count}")
    return [{"category": category, "shard": str(shard)} for shard in Shard.all_of(count)]


def pipeline_embed(category: str, manifest_dir: Path, model_dir: Path, out_dir: Path, *, shard: str = "0/1") -> Path:
    """Step 4: embed the images of one shard (``"i/n"``; ``"0/1"`` = all) with the champion.

    Resumes in a stable scratch folder named by the model, the data and the shard.
    """
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.model_files import read_spec
    from visearch.steps import run_embed

    ctx = Context.from_env()
    part = Shard.parse(shard)
    version = read_spec(model_dir).version
    data_hash = manifest_hash(load_manifest(manifest_dir))
    name = f"{version}-{data_hash}" + (f"-shard{part.index}of{part.count}" if part.count > 1 else "")
    scratch = ctx.settings.work_dir / category / "embed-scratch" / name
    return run_embed(ctx.settings, ctx.store, manifest_dir, model_dir, out_dir, scratch=scratch, shard=part)


def pipeline_upsert(
    category: str, manifest_dir: Path, model_dir: Path, embeddings_dir: Path | Sequence[Path], run_id: str
) -> UpsertResult:
    """Step 5: new collection version (or the same one, resumed), verified, alias swapped; ends the run.

    ``embeddings_dir``: the embed step's output, or the outputs of all its shards.
    """
    from visearch.steps import run_upsert

    ctx = Context.from_env()
    run = ctx.tracker().run(run_id)
    with run.failing():
        result = run_upsert(
            ctx.settings, ctx.store, ctx.registry.get(category), manifest_dir, model_dir, embeddings_dir, run=run
        )
    run.end()
    print(f"index {category}: alias -> {result.collection} ({result.count} points, reused={result.reused})")
    return result
