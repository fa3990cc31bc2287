"""The five pipeline steps as library calls on paths: what the CLI and the kfp components run.

preprocess → train → evaluate → embed → upsert. Each step reads its inputs from directories
and writes its outputs to a directory, so the same code runs from the CLI, in kfp.local and
in containers on Kubeflow.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from visearch.categories import Category, TrainParams
from visearch.data.manifest import (
    MANIFEST,
    MANIFEST_COLUMNS,
    cache_dir,
    image_paths,
    load_manifest,
    manifest_hash,
    sample_per_class,
)
from visearch.data.meta import caption_columns
from visearch.data.preprocess import VALIDATION, VALIDATION_CLASS, DataRules, split_by_class, validate_category
from visearch.data.summary import DataSummary, evaluation_plan
from visearch.embed import BATCH_SIZE as EMBED_BATCH_SIZE
from visearch.embed import Shard
from visearch.errors import DataError, IndexIntegrityError
from visearch.settings import Settings
from visearch.storage import ObjectStore

# torch, faiss, Qdrant (its client's models alone take 0.6 s) and MLflow are imported inside the
# steps that need them: every pipeline step is a fresh process, and importing all of them costs
# each step 10-20 s on 2 cores.
if TYPE_CHECKING:
    from visearch.index import VectorIndex
    from visearch.neighbours import NeighbourStats
    from visearch.tracking import TrackedRun
    from visearch.train import EpochCallback, TrainResult

log = logging.getLogger(__name__)


# --- preprocess ------------------------------------------------------------------------------
def check_data(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    *,
    params: TrainParams | None = None,
    show_progress: bool = True,
) -> tuple[pd.DataFrame, DataSummary]:
    """Validate the category's data and split it: the manifest and what it amounts to (writes nothing)."""
    params = params or category.train
    rules = DataRules.from_settings(settings)
    found = validate_category(category, store, cache_dir(settings), rules=rules, show_progress=show_progress)
    manifest = split_by_class(
        found.frame,
        split=params.split,
        holdout=params.holdout,
        seed=params.seed,
        min_images_per_class=rules.min_images_per_class,
        validation=params.validation,
    )
    plan = evaluation_plan(
        manifest,
        holdout=params.holdout,
        min_images_per_class=rules.min_images_per_class,
        validation=params.validation,
    )
    return manifest, DataSummary.of(category.name, manifest, found.report, found.sizes, plan)


def run_preprocess(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    out_dir: Path,
    *,
    params: TrainParams | None = None,
    show_progress: bool = True,
    run: TrackedRun | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Validate the category's data and write ``manifest.csv`` + ``report.json`` to ``out_dir``.

    Prints the data summary (rows dropped by reason, classes, which evaluation will run). With
    ``run``, the dataset's size, split and data hash go to MLflow as params and the report as an artifact.
    """
    params = params or category.train
    manifest, data = check_data(settings, store, category, params=params, show_progress=show_progress)
    if not data.plan.possible:
        raise DataError(f"{data.text()}\nadd images or classes so that one evaluation is possible")
    if show_progress:
        print(data.text(), flush=True)  # the step's log says what was dropped and which evaluation runs
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    splits = {str(name): int(n) for name, n in manifest["split"].value_counts().items()}
    summary = {
        **data.to_dict(),
        "splits": splits,
        "split_seed": params.seed,
        "data_hash": manifest_hash(manifest),
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if run:
        run.log_params(
            {
                "dataset_size": len(manifest),
                "dataset_dropped": len(data.report.dropped),
                "classes": data.classes,
                "split_seed": params.seed,
                "data_hash": summary["data_hash"],
                "data_prefix": category.data_prefix,
                "evaluation": data.plan.line(),
                "validation": data.plan.validation_line(),
                **{f"images_{k}": v for k, v in splits.items()},
            }
        )
        run.log_artifact(out_dir / "report.json", "data")
        run.log_dataset(
            manifest, name=category.name, digest=summary["data_hash"], source=store.uri(category.data_prefix)
        )
    return out_dir / MANIFEST, summary


# --- train -----------------------------------------------------------------------------------
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


# --- evaluate --------------------------------------------------------------------------------
def run_evaluate(
    settings: Settings,
    store: ObjectStore,
    manifest_dir: Path,
    models: dict[str, Path],
    out_path: Path,
    *,
    images_per_class: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each named model directory (e.g. baseline, tuned); writes and returns the metrics.

    ``images_per_class``: the evaluation budget, every model scored on the same sample (None: all).
    """
    from visearch.evaluate import evaluate_models

    manifest = sample_per_class(load_manifest(manifest_dir), images_per_class, seed=seed)
    report, _ = evaluate_models(settings, store, manifest, models, show_progress=show_progress)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


# --- embed -----------------------------------------------------------------------------------
def run_embed(
    settings: Settings,
    store: ObjectStore,
    manifest_dir: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    batch_size: int = EMBED_BATCH_SIZE,
    show_progress: bool = True,
    scratch: Path | None = None,
    shard: Shard | None = None,
) -> Path:
    """Embed every valid image of the category (all splits); resumable shard by shard.

    ``scratch``: embed there, then copy the finished shards to ``out_dir``. A pipeline gives every
    run fresh output folders, so a stable scratch folder is what lets an interrupted embed resume.
    ``shard``: embed only that range of the manifest's rows (``Shard.rows``); the upsert joins the
    shards (``read_embeddings``). None (or ``0/1``): every row.
    """
    from visearch.embed import embed_to_shards
    from visearch.model import load_model, resolve_device

    manifest = load_manifest(manifest_dir)
    keys = manifest["key"].tolist()
    marker: dict[str, str] = {}
    if shard and shard.count > 1:  # an unsharded marker stays as it was: earlier embeddings still resume
        keys = [keys[i] for i in shard.rows(len(keys))]
        marker = {"shard": str(shard)}
    model = load_model(model_dir)
    target = scratch or out_dir
    embed_to_shards(
        model,
        keys,
        image_paths(store, settings, keys),
        target,
        batch_size=batch_size,
        show_progress=show_progress,
        device=resolve_device(settings.visearch_device),
        marker=marker,
        workers=settings.embed_workers,
    )
    if scratch:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(scratch.glob("part-*.npz")):
            if not path.name.endswith(".tmp.npz"):
                shutil.copyfile(path, out_dir / path.name)
        shutil.copyfile(scratch / "done.json", out_dir / "done.json")  # last: marks the copy complete
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


# --- upsert ----------------------------------------------------------------------------------
@dataclass
class UpsertResult:
    """What an upsert did: live collection, point count, previous live one, dropped versions, reuse of earlier work."""

    collection: str
    count: int
    previous: str | None
    dropped: list[str]
    reused: bool
    neighbours: NeighbourStats | None = None


def publish_model(store: ObjectStore, category: str, model_dir: Path) -> str:
    """Copy the model files to the store (``model.store_key``): the search path loads them from there.

    A version names its weights, so files already stored under it are the same files: they are not
    uploaded again (the train step publishes what the upsert step would publish a second time).
    """
    from visearch.model_files import model_files, read_spec, store_key

    version = read_spec(model_dir).version
    for path in model_files(model_dir):
        key = store_key(category, version, path.name)
        if not store.exists(key):
            store.put_file(key, path)
    return version


def prune_models(store: ObjectStore, index: VectorIndex, category: str, dropped: list[str]) -> list[str]:
    """Delete the model folders of dropped index versions that no kept version still uses; returns their keys."""
    from visearch.index import CollectionVersion
    from visearch.model_files import store_key

    in_use = {version.model_version for version in index.versions(category)}
    gone = {v.model_version for v in map(CollectionVersion.parse, dropped) if v is not None} - in_use
    deleted = []
    for model_version in sorted(gone):
        for key in list(store.list(store_key(category, model_version))):
            store.delete(key)
            deleted.append(key)
    return deleted


def payload_for(row: pd.Series, captions: list[str], store: ObjectStore) -> dict[str, Any]:
    """The meta CSV row + where the image lives (``image_key`` in the store, ``image_uri``)."""
    payload: dict[str, Any] = {
        "file": row["file"],
        "class": row["class"],
        "label": int(row["label"]),
        "image_key": row["key"],
        "image_uri": store.uri(row["key"]),
    }
    for column in captions:
        value = row[column]
        payload[column] = None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
    return payload


def run_upsert(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    embeddings_dir: Path | Sequence[Path],
    *,
    index: VectorIndex | None = None,
    batch_size: int | None = None,
    run: TrackedRun | None = None,
) -> UpsertResult:
    """Write a new collection version, verify its count, then swap the alias atomically.

    Idempotent: the same model + data resolve to the same collection, already stored ids are
    skipped (an interrupted run finishes), and uuid5 ids never duplicate a point. With ``run``,
    the live collection is recorded on the MLflow run. ``embeddings_dir``: one embedding directory,
    or the directories of all shards of the category (any order; together they must equal the manifest).
    ``batch_size``: points per upsert batch (None: the index's ``UPSERT_BATCH``).
    """
    result = _upsert(settings, store, category, manifest_dir, model_dir, embeddings_dir, index, batch_size)
    if run:
        run.set_tags(
            {
                "index.collection": result.collection,
                "index.previous": result.previous or "",
                "index.reused": result.reused,
            }
        )
        run.log_metrics({"index.points": result.count})
        if result.neighbours is not None:
            log_neighbours(run, result.neighbours)
    return result


def log_neighbours(run: TrackedRun, stats: NeighbourStats) -> None:
    """Record the nearest-neighbour statistics on the run: quartile metrics, pair count, the JSON."""
    metrics = {"index.duplicate_pairs": float(len(stats.duplicates))}
    for percentile in (5, 25, 50, 75, 95):
        value = stats.similarity_at(percentile)
        if value is not None:
            metrics[f"index.nn_similarity_p{percentile}"] = value
    run.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "neighbours.json"
        path.write_text(stats.to_json(), encoding="utf-8")
        run.log_artifact(path, "index")


def _upsert(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    embeddings_dir: Path | Sequence[Path],
    index: VectorIndex | None,
    batch_size: int | None,
) -> UpsertResult:
    from visearch.embed import read_embeddings
    from visearch.index import UPSERT_BATCH, open_index, point_id
    from visearch.neighbours import ensure_stats

    manifest = load_manifest(manifest_dir)
    keys, vectors, model_version = read_embeddings(embeddings_dir)
    if keys != manifest["key"].tolist():
        raise IndexIntegrityError(f"{embeddings_dir} does not match the manifest; re-run embed")
    publish_model(store, category.name, model_dir)
    own_client = index is None
    index = index or open_index(settings)
    try:
        previous = index.live(category.name)
        version = index.create(category.name, model_version, manifest_hash(manifest), vectors.shape[1], category.fields)
        ids = [point_id(category.name, str(file)) for file in manifest["file"]]
        threshold = category.duplicate_threshold
        if previous and previous.name == version.name:
            stats = ensure_stats(index, store, version.name, ids, threshold=threshold)
            return UpsertResult(version.name, index.count(version.name), previous.name, [], True, stats)
        captions = caption_columns(manifest.drop(columns=list(MANIFEST_COLUMNS)))
        done = index.existing_ids(version.name, ids)
        todo = [i for i, pid in enumerate(ids) if pid not in done]
        index.upsert(
            version.name,
            [ids[i] for i in todo],
            vectors[todo],
            [payload_for(manifest.iloc[i], captions, store) for i in todo],
            batch_size=batch_size or UPSERT_BATCH,
            captions=category.captions,
        )
        count = index.count(version.name)
        if count != len(ids):
            raise IndexIntegrityError(f"{version.name} holds {count} points, expected {len(ids)}: alias not swapped")
        index.seal(version.name)
        # Measured on the finished version, before it goes live: a live version always has them.
        stats = ensure_stats(index, store, version.name, ids, threshold=threshold)
        index.swap_alias(category.name, version.name)
        dropped = index.drop_old(category.name, settings.keep_index_versions)
        prune_models(store, index, category.name, dropped)
        return UpsertResult(version.name, count, previous.name if previous else None, dropped, bool(done), stats)
    finally:
        if own_client:
            index.close()
