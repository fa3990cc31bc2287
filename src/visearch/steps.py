"""The five pipeline steps as library calls on paths: what the CLI and the kfp components run.

preprocess → train → evaluate → embed → upsert. Each step reads its inputs from directories
and writes its outputs to a directory, so the same code runs from the CLI, in kfp.local and
in containers on Kubeflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from visearch.categories import Category, TrainParams
from visearch.data.meta import caption_columns
from visearch.data.preprocess import read_manifest, split_by_class, validate_category
from visearch.embed import BATCH_SIZE as EMBED_BATCH_SIZE
from visearch.settings import Settings
from visearch.storage import ObjectStore

# torch, faiss, Qdrant and MLflow are imported inside the steps that need them: every pipeline
# step is a fresh process, and importing all of them costs each step 10-20 s on 2 cores.
if TYPE_CHECKING:
    from visearch.index import VectorIndex
    from visearch.model import EmbeddingModel
    from visearch.tracking import TrackedRun
    from visearch.train import EpochCallback, TrainResult

log = logging.getLogger(__name__)
MANIFEST = "manifest.csv"


def cache_dir(settings: Settings) -> Path:
    return settings.home / "cache"


def image_paths(store: ObjectStore, settings: Settings, keys: list[str]) -> list[Path]:
    return [store.local_path(key, cache_dir(settings)) for key in keys]


def manifest_hash(manifest: pd.DataFrame) -> str:
    """Short hash of what gets indexed: a changed dataset gets a new collection version."""
    columns = ["key", "class", "label", *caption_columns(manifest.drop(columns=["key", "split"]))]
    return hashlib.sha256(manifest[columns].to_csv(index=False).encode()).hexdigest()[:8]


# --- preprocess ------------------------------------------------------------------------------
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

    With ``run``, the dataset's size, split and data hash go to MLflow as params.
    """
    params = params or category.train
    frame, report = validate_category(category, store, cache_dir(settings), show_progress=show_progress)
    manifest = split_by_class(frame, split=params.split, holdout=params.holdout, seed=params.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    splits = {str(name): int(n) for name, n in manifest["split"].value_counts().items()}
    summary = {
        "category": category.name,
        **report.to_dict(),
        "classes": int(manifest["class"].nunique()),
        "splits": splits,
        "split_seed": params.seed,
        "data_hash": manifest_hash(manifest),
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if run:
        run.log_params({"dataset_size": len(manifest), "dataset_dropped": len(report.dropped),
                        "classes": summary["classes"], "split_seed": params.seed, "data_hash": summary["data_hash"],
                        "data_prefix": category.data_prefix, **{f"images_{k}": v for k, v in splits.items()}})  # fmt: skip
        run.log_artifact(out_dir / "report.json", "data")
    return out_dir / MANIFEST, summary


def load_manifest(manifest_dir: Path) -> pd.DataFrame:
    return read_manifest(manifest_dir / MANIFEST if manifest_dir.is_dir() else manifest_dir)


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
) -> TrainResult:
    """Fine-tune on the manifest's ``train`` rows; the model (and model.onnx) lands in ``out_dir/model``.

    With ``run``: all training params, the loss of every epoch and the model files go to MLflow.
    """
    from visearch.model import export_onnx, load_model
    from visearch.train import train

    manifest = load_manifest(manifest_dir)
    rows = manifest[manifest["split"] == "train"].reset_index(drop=True)
    # PML's MPerClassSampler draws from NumPy's global RNG: seed it so equal inputs give an equal
    # model (and version), which keeps re-runs idempotent.
    np.random.seed(params.seed)
    if run:
        run.log_params({**params.model_dump(), "train_images": len(rows)})
    callback = on_epoch
    if run:

        def callback(epoch: int, loss: float) -> None:
            run.log_metric("loss", loss, step=epoch)
            if on_epoch:
                on_epoch(epoch, loss)

    result = train(rows, image_paths(store, settings, rows["key"].tolist()), params, out_dir,
                   on_epoch=callback, show_progress=show_progress)  # fmt: skip
    if onnx:
        export_onnx(load_model(result.model_dir), result.model_dir / "model.onnx")
    if run:
        run.log_params({"effective_batch_size": result.batch_size, "model_version": result.version})
        run.log_model_dir(result.model_dir, "model")
    return result


def save_baseline(params: TrainParams, out_dir: Path, *, onnx: bool = False) -> Path:
    """The frozen pretrained trunk as a model directory: the baseline, and a candidate the gate may pick."""
    from visearch.model import export_onnx, save_model
    from visearch.train import frozen_model

    model = frozen_model(params)
    model_dir = save_model(model, out_dir)
    if onnx:
        export_onnx(model, model_dir / "model.onnx")
    return model_dir


# --- evaluate --------------------------------------------------------------------------------
def evaluate_model(
    model: EmbeddingModel, manifest: pd.DataFrame, paths: list[Path], *, show_progress: bool = True
) -> dict[str, dict[str, float]]:
    """In-domain (held-out images vs training images of the same classes) and class-disjoint metrics."""
    from visearch.embed import embed_paths

    vectors = embed_paths(model, paths, show_progress=show_progress, desc=f"evaluating {model.spec.version}")
    return evaluate_vectors(vectors, manifest)


def evaluate_vectors(vectors: np.ndarray, manifest: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The metrics of :func:`evaluate_model` for vectors already computed (one row per manifest row)."""
    from visearch.evaluate import retrieval_metrics

    labels = manifest["label"].to_numpy(dtype=np.int64)
    split = manifest["split"].to_numpy()
    results: dict[str, dict[str, float]] = {}
    heldout, train_rows, test = split == "heldout", split == "train", split == "test"
    if heldout.any():
        results["in_domain"] = retrieval_metrics(
            vectors[heldout], labels[heldout], vectors[train_rows], labels[train_rows]
        )
    if test.sum() > 1 and len(np.unique(labels[test])) > 1:
        results["class_disjoint"] = retrieval_metrics(vectors[test], labels[test])
    return results


def run_evaluate(
    settings: Settings,
    store: ObjectStore,
    manifest_dir: Path,
    models: dict[str, Path],
    out_path: Path,
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each named model directory (e.g. baseline, tuned); writes and returns the metrics."""
    report, _ = evaluate_models(settings, store, load_manifest(manifest_dir), models, show_progress=show_progress)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def evaluate_models(
    settings: Settings,
    store: ObjectStore,
    manifest: pd.DataFrame,
    models: dict[str, Path],
    *,
    show_progress: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of each named model directory, plus its vectors of every manifest row (for plots)."""
    from visearch.embed import embed_paths
    from visearch.model import load_model

    paths = image_paths(store, settings, manifest["key"].tolist())
    report: dict[str, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for name, model_dir in models.items():
        model = load_model(model_dir)
        vectors[name] = embed_paths(model, paths, show_progress=show_progress,
                                    desc=f"evaluating {name} {model.spec.version}")  # fmt: skip
        report[name] = {"version": model.spec.version, **evaluate_vectors(vectors[name], manifest)}
    return report, vectors


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
) -> Path:
    """Embed every valid image of the category (all splits); resumable shard by shard.

    ``scratch``: embed there, then copy the finished shards to ``out_dir``. A pipeline gives every
    run fresh output folders, so a stable scratch folder is what lets an interrupted embed resume.
    """
    from visearch.embed import embed_to_shards
    from visearch.model import load_model

    manifest = load_manifest(manifest_dir)
    keys = manifest["key"].tolist()
    model = load_model(model_dir)
    target = scratch or out_dir
    embed_to_shards(model, keys, image_paths(store, settings, keys), target, batch_size=batch_size,
                    show_progress=show_progress)  # fmt: skip
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
    collection: str
    count: int
    previous: str | None
    dropped: list[str]
    reused: bool


def publish_model(store: ObjectStore, category: str, model_dir: Path) -> str:
    """Copy the model files to ``models/<category>/<version>/`` (the search path loads from there)."""
    from visearch.model import read_spec

    version = read_spec(model_dir).version
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in (".pth", ".json", ".onnx"):
            store.put_file(f"models/{category}/{version}/{path.name}", path)
    return version


def payload_for(row: pd.Series, captions: list[str], store: ObjectStore) -> dict[str, Any]:
    """The meta CSV row + where the image lives (``image_key`` in the store, ``image_uri``)."""
    payload: dict[str, Any] = {"file": row["file"], "class": row["class"], "label": int(row["label"]),
                               "image_key": row["key"], "image_uri": store.uri(row["key"])}  # fmt: skip
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
    embeddings_dir: Path,
    *,
    index: VectorIndex | None = None,
    batch_size: int = 256,
    run: TrackedRun | None = None,
) -> UpsertResult:
    """Write a new collection version, verify its count, then swap the alias atomically.

    Idempotent: the same model + data resolve to the same collection, already stored ids are
    skipped (an interrupted run finishes), and uuid5 ids never duplicate a point. With ``run``,
    the live collection is recorded on the MLflow run.
    """
    result = _upsert(settings, store, category, manifest_dir, model_dir, embeddings_dir, index, batch_size)
    if run:
        run.set_tags({"index.collection": result.collection, "index.previous": result.previous or "",
                      "index.reused": result.reused})  # fmt: skip
        run.log_metrics({"index.points": result.count})
    return result


def _upsert(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    embeddings_dir: Path,
    index: VectorIndex | None,
    batch_size: int,
) -> UpsertResult:
    from visearch.embed import read_shards
    from visearch.index import open_index, point_id

    manifest = load_manifest(manifest_dir)
    keys, vectors, model_version = read_shards(embeddings_dir)
    if keys != manifest["key"].tolist():
        raise ValueError(f"{embeddings_dir} does not match the manifest; re-run embed")
    publish_model(store, category.name, model_dir)
    own_client = index is None
    index = index or open_index(settings)
    try:
        previous = index.live(category.name)
        version = index.create(category.name, model_version, manifest_hash(manifest), vectors.shape[1])
        if previous and previous.name == version.name:
            return UpsertResult(version.name, index.count(version.name), previous.name, [], True)
        captions = caption_columns(manifest.drop(columns=["key", "split"]))
        ids = [point_id(category.name, str(file)) for file in manifest["file"]]
        done = index.existing_ids(version.name, ids)
        todo = [i for i, pid in enumerate(ids) if pid not in done]
        index.upsert(version.name, [ids[i] for i in todo], vectors[todo],
                     [payload_for(manifest.iloc[i], captions, store) for i in todo], batch_size=batch_size)  # fmt: skip
        count = index.count(version.name)
        if count != len(ids):
            raise ValueError(f"{version.name} holds {count} points, expected {len(ids)}: alias not swapped")
        index.seal(version.name)
        index.swap_alias(category.name, version.name)
        dropped = index.drop_old(category.name, settings.keep_index_versions)
        return UpsertResult(version.name, count, previous.name if previous else None, dropped, bool(done))
    finally:
        if own_client:
            index.close()


# --- the whole loop in one process (the kfp pipeline runs the same steps as components) ------
@dataclass
class LoopOutcome:
    manifest: Path
    metrics: dict[str, Any]
    collection: str
    count: int
    reason: str = ""
    run_id: str | None = None


def run_loop(
    settings: Settings, store: ObjectStore, category: Category, *, show_progress: bool = True, track: bool = True
) -> LoopOutcome:
    """preprocess → train → evaluate + gate → embed → upsert in this process, tracked in MLflow.

    Without ``track`` (no MLflow), the gate has no champion history and picks the better candidate.
    """
    from visearch.gate import FROZEN, TUNED, evaluate_and_gate

    work = settings.work_dir / category.name
    tracker = None
    run = None
    if track:
        from visearch.tracking import Tracker

        tracker = Tracker.from_settings(settings)
        run = tracker.run(tracker.start_run(category.name, tags={"visearch.runner": "run_loop"}))
    guard = run.failing() if run else nullcontext()
    with guard:
        manifest, _ = run_preprocess(settings, store, category, work / "manifest", show_progress=show_progress, run=run)
        trained = run_train(settings, store, work / "manifest", category.train, work / "train",
                            show_progress=show_progress, run=run)  # fmt: skip
        baseline = save_baseline(category.train, work / "baseline")
        outcome = evaluate_and_gate(settings, store, category, work / "manifest",
                                    {TUNED: trained.model_dir, FROZEN: baseline}, work / "evaluation",
                                    work / "champion", tracker=tracker, run=run, show_progress=show_progress)  # fmt: skip
        embeddings = run_embed(settings, store, work / "manifest", outcome.champion_dir, work / "embeddings",
                               show_progress=show_progress)  # fmt: skip
        result = run_upsert(settings, store, category, work / "manifest", outcome.champion_dir, embeddings, run=run)
    if run:
        run.end()
    metrics = {name: entry for name, entry in outcome.report.items()}
    return LoopOutcome(manifest, metrics, result.collection, result.count, outcome.decision.reason,
                       run.run_id if run else None)  # fmt: skip
