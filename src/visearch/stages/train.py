"""Stage 2, train: fine-tune the trunk + embedder, and save the frozen trunk as the second candidate.

Rules this stage owns:
- Resume: training runs in a scratch folder named by the parameters and the data
  (``TrainingNames``), with a copy of each epoch's checkpoint in the object store, so a step killed
  mid-training resumes from its last epoch, here or in a new pod.
- Reuse: a model trained before on the same data with the same parameters (and length) is taken
  as it is (a pointer in the object store names it), not trained a second time.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visearch.categories import Category, TrainParams
from visearch.settings import Settings
from visearch.stages.preprocess import read_params
from visearch.storage import ObjectStore

# torch and MLflow are imported by the functions that use them: every pipeline step is a fresh
# process, and importing them costs each step seconds on 2 cores.
if TYPE_CHECKING:
    from visearch.tracking import TrackedRun
    from visearch.train import EpochCallback, TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingNames:
    """Where one training of a category keeps its scratch, checkpoint and reuse pointer.

    ``scratch`` is pod-local; ``checkpoint_key`` and ``trained_key`` are in the object store, so a
    retried pod (a fresh filesystem) resumes from the last epoch or reuses the finished model
    (the embed stage's parts live beside the checkpoint: ``EmbedNames``).
    """

    scratch: Path
    checkpoint_key: str
    trained_key: str

    @classmethod
    def of(cls, settings: Settings, category: str, params: TrainParams, data_hash: str) -> TrainingNames:
        """Names from what shapes the weights (params identity + data) and, for reuse, how long it trained."""
        identity = f"{params.identity()}-{data_hash}"
        length = f"epochs{params.epochs}-patience{params.patience}-steps{params.max_steps or 0}"
        return cls(
            scratch=settings.work_dir / category / "train-scratch" / identity,
            checkpoint_key=f"checkpoints/{category}/{identity}/checkpoint.pt",
            trained_key=f"trained/{category}/{identity}-{length}.json",
        )


def train_candidates(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    baseline_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
    run: TrackedRun | None = None,
    show_progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """The stage: the fine-tuned model in ``model_dir`` (trained, resumed or reused) and the frozen trunk in ``baseline_dir``.

    ``overrides`` apply on top of the parameters preprocess resolved for this manifest.
    """
    from visearch.data.manifest import load_manifest, manifest_hash
    from visearch.model_files import copy_model
    from visearch.stages.upsert import publish_model
    from visearch.train import TrainResult

    params = read_params(manifest_dir, category, overrides)
    names = TrainingNames.of(settings, category.name, params, manifest_hash(load_manifest(manifest_dir)))
    reused = reuse_trained(store, settings, category.name, names.trained_key, model_dir)
    if reused is not None:
        print(f"train {category.name}: reusing model {reused}, trained on the same data with the same params")
        if run:
            log_reuse(run, params, reused, json.loads(store.get_bytes(names.trained_key)).get("run_id"))
        result = TrainResult(model_dir, reused)
    else:
        result = run_train(
            settings,
            store,
            manifest_dir,
            params,
            names.scratch,
            run=run,
            checkpoint_key=names.checkpoint_key,
            show_progress=show_progress,
            on_epoch=on_epoch,
        )
        copy_model(result.model_dir, model_dir)
        result.model_dir = model_dir
        publish_model(store, category.name, model_dir)
        # The run that trained it: a later run that reuses the model links it and copies its curves.
        pointer = {"model_version": result.version, "run_id": run.run_id if run else None}
        store.put_bytes(names.trained_key, json.dumps(pointer).encode())
    save_baseline(params, baseline_dir, onnx=True)  # both reach MLflow as models at the gate
    # Trained and recorded: the checkpoint has done its job.
    store.delete(names.checkpoint_key)
    shutil.rmtree(names.scratch, ignore_errors=True)
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


# What the train step logs besides the TrainParams (run_train), and its curves: a reusing run copies them.
TRAINED_PARAMS = ("train_images", "train_images_available", "effective_batch_size", "model_version")
TRAINED_METRICS = ("loss", "best_epoch", "epochs_run")


def log_reuse(run: TrackedRun, params: TrainParams, version: str, trained_by: str | None) -> None:
    """Let a run that reused a model compare like the run that trained it (``trained_by``, if known).

    The same params (this run's TrainParams, the trained run's data counts), the training loss and
    validation curves copied with their steps, and the ``train.trained_by_run`` tag naming that run.
    """
    from mlflow.exceptions import MlflowException

    values: dict[str, Any] = {**params.model_dump(), "model_version": version}
    tags = {"train.reused": version}
    if trained_by:
        tags["train.trained_by_run"] = trained_by
        tags["mlflow.note.content"] = f"Reuses model {version}, trained by run {trained_by}."
        try:
            source = run.client.get_run(trained_by)
        except MlflowException:  # deleted, or tracked on another server: the link stays
            source = None
        if source is not None:
            values.update({k: v for k, v in source.data.params.items() if k in TRAINED_PARAMS})
            for key in source.data.metrics:
                if key in TRAINED_METRICS or key.startswith("val."):
                    run.client.log_batch(run.run_id, metrics=run.client.get_metric_history(trained_by, key))
    run.log_params(values)
    run.set_tags(tags)


def run_train(
    settings: Settings,
    store: ObjectStore,
    manifest_dir: Path,
    params: TrainParams,
    out_dir: Path,
    *,
    on_epoch: EpochCallback | None = None,
    show_progress: bool = True,
    onnx: bool = True,
    run: TrackedRun | None = None,
    checkpoint_key: str | None = None,
) -> TrainResult:
    """Fine-tune on the manifest's ``train`` rows; the model (and model.onnx) lands in ``out_dir/model``.

    Resumes from ``out_dir/checkpoint.pt`` when it was written for the same params and data. With
    ``checkpoint_key``, the checkpoint is also kept in the object store after every epoch and
    fetched from there when ``out_dir`` lacks it (a pod that died leaves it where the next finds it).
    When the manifest has validation rows, every epoch is scored on them, the best epoch's weights
    are kept and training stops early after ``params.patience`` epochs without progress; else
    every epoch runs. With ``run``: all training params, the loss and the validation metrics of
    every epoch (``val.in_domain.mean_average_precision_at_r``, ``val.class_disjoint.…``: step
    metrics, curves in the MLflow UI) and the best epoch go to MLflow (the model files go with the
    model the gate logs and registers).
    """
    import numpy as np
    import pandas as pd

    from visearch.data.checks import VALIDATION, VALIDATION_CLASS
    from visearch.data.manifest import cache_dir, image_paths, load_manifest, manifest_hash, sample_per_class
    from visearch.evaluate import validation_metrics
    from visearch.model import ONNX_FILE, EmbeddingModel, export_onnx, load_model, resolve_device
    from visearch.train import CHECKPOINT_FILE, Metrics, train

    manifest = load_manifest(manifest_dir)
    available = manifest[manifest["split"] == "train"].reset_index(drop=True)
    rows = sample_per_class(available, params.train_images_per_class, seed=params.seed)
    if len(rows) < len(available):
        log.info("training budget: %d of %d training images", len(rows), len(available))
    device = resolve_device(settings.visearch_device)
    validate = None
    if manifest["split"].isin([VALIDATION, VALIDATION_CLASS]).any():
        # Validation searches against the images trained on: the budget's sample, not every train row.
        checked = manifest[manifest["split"].isin([VALIDATION, VALIDATION_CLASS])]
        seen = pd.concat([rows, checked], ignore_index=True)
        paths = image_paths(store, settings, seen["key"].tolist())

        def validate(model: EmbeddingModel) -> Metrics:
            return validation_metrics(model, seen, paths, device=device)

    else:
        log.info("no validation rows in the manifest: training runs all %d epochs", params.epochs)
    # PML's MPerClassSampler draws from NumPy's global RNG: seed it so equal inputs give an equal
    # model (and version), which keeps re-runs idempotent.
    np.random.seed(params.seed)
    if run:
        run.log_params({**params.model_dump(), "train_images": len(rows), "train_images_available": len(available)})
    callback = on_epoch
    if run:

        def callback(epoch: int, loss: float) -> None:
            run.log_metric("loss", loss, step=epoch)
            if on_epoch:
                on_epoch(epoch, loss)

    checkpoint = out_dir / CHECKPOINT_FILE
    if checkpoint_key and not checkpoint.is_file() and store.exists(checkpoint_key):
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.local_path(checkpoint_key, cache_dir(settings)), checkpoint)

    def keep(path: Path) -> None:
        if checkpoint_key:
            store.put_file(checkpoint_key, path)

    def log_validation(epoch: int, metrics: Metrics) -> None:
        if run:
            run.log_metrics(
                {f"val.{name}.{metric}": value for name, result in metrics.items() for metric, value in result.items()},
                step=epoch,
            )

    result = train(
        rows,
        image_paths(store, settings, rows["key"].tolist()),
        params,
        out_dir,
        on_epoch=callback,
        on_checkpoint=keep,
        validate=validate,
        on_validation=log_validation,
        data_key=manifest_hash(rows),
        device=device,
        show_progress=show_progress,
    )
    if onnx:
        export_onnx(load_model(result.model_dir), result.model_dir / ONNX_FILE)
    if run:
        # The model's files reach MLflow with the model the gate logs and registers (visearch.gate).
        run.log_params({"effective_batch_size": result.batch_size, "model_version": result.version})
        if result.best_epoch is not None:
            run.log_metrics({"best_epoch": result.best_epoch, "epochs_run": len(result.epoch_losses)})
            run.set_tags({"train.stopped_early": result.stopped_early})
    return result


def save_baseline(params: TrainParams, out_dir: Path, *, onnx: bool = False) -> Path:
    """The frozen pretrained trunk as a model directory: the baseline, and a candidate the gate may pick."""
    from visearch.model import ONNX_FILE, export_onnx, save_model
    from visearch.train import frozen_model

    model = frozen_model(params)
    model_dir = save_model(model, out_dir)
    if onnx:
        export_onnx(model, model_dir / ONNX_FILE)
    return model_dir


def train_step(category: str, manifest_dir: Path, run_id: str, model_dir: Path, baseline_dir: Path) -> TrainResult:
    """The pipeline entry: ``train_candidates`` in the category's MLflow run (parameters from the manifest's folder)."""
    from visearch.stages.tracked import tracked_step

    with tracked_step(run_id) as (ctx, run):
        return train_candidates(*ctx.for_stage(category), manifest_dir, model_dir, baseline_dir, run=run)
