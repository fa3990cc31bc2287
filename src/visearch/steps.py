"""The five pipeline steps as library calls on paths: what the CLI and the kfp components run.

preprocess → train → evaluate → embed → upsert. Each step reads its inputs from directories
and writes its outputs to a directory, so the same code runs from the CLI, in kfp.local and
in containers on Kubeflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visearch.categories import Category, TrainParams
from visearch.data.meta import caption_columns
from visearch.data.preprocess import read_manifest, split_by_class, validate_category
from visearch.embed import embed_paths, embed_to_shards, read_shards
from visearch.evaluate import retrieval_metrics
from visearch.index import VectorIndex, make_client, point_id
from visearch.model import EmbeddingModel, export_onnx, load_model, read_spec, save_model
from visearch.settings import Settings
from visearch.storage import ObjectStore
from visearch.train import TrainResult, frozen_model, train

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
) -> tuple[Path, dict[str, Any]]:
    """Validate the category's data and write ``manifest.csv`` + ``report.json`` to ``out_dir``."""
    params = params or category.train
    frame, report = validate_category(category, store, cache_dir(settings), show_progress=show_progress)
    manifest = split_by_class(frame, split=params.split, holdout=params.holdout, seed=params.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    summary = {
        **report.to_dict(),
        "classes": int(manifest["class"].nunique()),
        "splits": {name: int(n) for name, n in manifest["split"].value_counts().items()},
        "split_seed": params.seed,
        "data_hash": manifest_hash(manifest),
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
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
    on_epoch: Any = None,
    show_progress: bool = True,
    onnx: bool = True,
) -> TrainResult:
    """Fine-tune on the manifest's ``train`` rows; the model (and model.onnx) lands in ``out_dir/model``."""
    manifest = load_manifest(manifest_dir)
    rows = manifest[manifest["split"] == "train"].reset_index(drop=True)
    result = train(rows, image_paths(store, settings, rows["key"].tolist()), params, out_dir,
                   on_epoch=on_epoch, show_progress=show_progress)  # fmt: skip
    if onnx:
        export_onnx(load_model(result.model_dir), result.model_dir / "model.onnx")
    return result


def save_baseline(params: TrainParams, out_dir: Path) -> Path:
    """The frozen pretrained trunk as a model directory: the baseline, and a candidate the gate may pick."""
    return save_model(frozen_model(params), out_dir)


# --- evaluate --------------------------------------------------------------------------------
def evaluate_model(
    model: EmbeddingModel, manifest: pd.DataFrame, paths: list[Path], *, show_progress: bool = True
) -> dict[str, dict[str, float]]:
    """In-domain (held-out images vs training images of the same classes) and class-disjoint metrics."""
    vectors = embed_paths(model, paths, show_progress=show_progress, desc=f"evaluating {model.spec.version}")
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
    manifest = load_manifest(manifest_dir)
    paths = image_paths(store, settings, manifest["key"].tolist())
    report: dict[str, Any] = {}
    for name, model_dir in models.items():
        model = load_model(model_dir)
        report[name] = {
            "version": model.spec.version,
            **evaluate_model(model, manifest, paths, show_progress=show_progress),
        }
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
    batch_size: int = 64,
    show_progress: bool = True,
) -> Path:
    """Embed every valid image of the category (all splits); resumable shard by shard."""
    manifest = load_manifest(manifest_dir)
    keys = manifest["key"].tolist()
    model = load_model(model_dir)
    return embed_to_shards(model, keys, image_paths(store, settings, keys), out_dir, batch_size=batch_size,
                           show_progress=show_progress)  # fmt: skip


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
) -> UpsertResult:
    """Write a new collection version, verify its count, then swap the alias atomically.

    Idempotent: the same model + data resolve to the same collection, already stored ids are
    skipped (an interrupted run finishes), and uuid5 ids never duplicate a point.
    """
    manifest = load_manifest(manifest_dir)
    keys, vectors, model_version = read_shards(embeddings_dir)
    if keys != manifest["key"].tolist():
        raise ValueError(f"{embeddings_dir} does not match the manifest; re-run embed")
    publish_model(store, category.name, model_dir)
    own_client = index is None
    index = index or VectorIndex(make_client(settings))
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
        index.swap_alias(category.name, version.name)
        dropped = index.drop_old(category.name, settings.keep_index_versions)
        return UpsertResult(version.name, count, previous.name if previous else None, dropped, bool(done))
    finally:
        if own_client:
            index.client.close()


# --- the whole loop in one process (the kfp pipeline runs the same steps as components) ------
@dataclass
class LoopOutcome:
    manifest: Path
    metrics: dict[str, Any]
    collection: str
    count: int


def run_loop(
    settings: Settings, store: ObjectStore, category: Category, *, show_progress: bool = True
) -> LoopOutcome:
    work = settings.work_dir / category.name
    manifest, _ = run_preprocess(settings, store, category, work / "manifest", show_progress=show_progress)
    trained = run_train(settings, store, work / "manifest", category.train, work / "train", show_progress=show_progress)
    baseline = save_baseline(category.train, work / "baseline")
    metrics = run_evaluate(settings, store, work / "manifest", {"baseline": baseline, "tuned": trained.model_dir},
                           work / "metrics.json", show_progress=show_progress)  # fmt: skip
    embeddings = run_embed(settings, store, work / "manifest", trained.model_dir, work / "embeddings",
                           show_progress=show_progress)  # fmt: skip
    result = run_upsert(settings, store, category, work / "manifest", trained.model_dir, embeddings)
    return LoopOutcome(manifest, metrics, result.collection, result.count)
