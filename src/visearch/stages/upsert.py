"""Stage 5, upsert: write a new collection version, verify it, swap the category's alias to it atomically.

Rules this stage owns:
- Idempotent: the same model + data + index schema (the registry's ``fields`` and ``captions``)
  resolve to the same collection version; a changed schema builds a new one; ids already stored
  are skipped (an interrupted upsert finishes), and uuid5 ids never duplicate a point.
- Publishing: the model files go to the object store under their version (the search path loads
  them from there); retention drops old versions and the model folders no kept version uses.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visearch.categories import Category
from visearch.errors import IndexIntegrityError
from visearch.settings import Settings
from visearch.stages.preprocess import changes_seq
from visearch.storage import ObjectStore

# pandas, the Qdrant client (its models alone take 0.6 s) and torch stay out of this module's
# imports: the train step publishes its model through it, in a fresh process.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from visearch.catalogue import Embed
    from visearch.index import CollectionVersion, VectorIndex
    from visearch.neighbours import NeighbourStats
    from visearch.tracking import TrackedRun

log = logging.getLogger(__name__)


@dataclass
class UpsertResult:
    """What an upsert did: live collection, point count, previous live one, dropped versions, reuse of earlier work."""

    collection: str
    count: int
    previous: str | None
    dropped: list[str]
    reused: bool
    neighbours: NeighbourStats | None = None
    replayed: int = 0  # change-log records applied after the run read its data, before the swap


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


def payload_for(
    row: pd.Series, captions: list[str], store: ObjectStore, fields: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The meta CSV row + where the image lives (``image_key`` in the store, ``image_uri``).

    ``fields`` (column -> kind, the registry's) type the values their payload index needs: a CSV
    reads ``1924`` as a number in one file and as text in another (an empty cell makes the column text).
    """
    import pandas as pd

    payload: dict[str, Any] = {
        "file": row["file"],
        "class": row["class"],
        "label": int(row["label"]),
        "image_key": row["key"],
        "image_uri": store.uri(row["key"]),
    }
    for column in captions:
        value = row[column]
        value = None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
        payload[column] = typed_value(value, (fields or {}).get(column))
    return payload


def typed_value(value: Any, kind: str | None) -> Any:
    """``value`` as the declared field kind wants it (None for an empty cell); unconvertible values stay as they are."""
    if kind is None or value is None:
        return value
    if kind in ("keyword", "text"):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str) and not value.strip():
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if kind == "integer":
        return int(number) if number.is_integer() else value
    return number


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
    from visearch.index import open_index

    own_client = index is None
    index = index or open_index(settings)
    try:
        result = _write(index, settings, store, category, manifest_dir, model_dir, embeddings_dir, batch_size)
    finally:
        if own_client:
            index.close()
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


def index_lag(index: VectorIndex, category: Category) -> str | None:
    """Why the category's live index does not serve its registry ``fields``/``captions`` yet; None when it does.

    What ``visearch check`` prints; the service's category listing can say the same.
    """
    from visearch.index.versions import schema_lag

    return schema_lag(index.live(category.name), category.fields, category.captions, category.meaning)


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


def _write(
    index: VectorIndex,
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    embeddings_dir: Path | Sequence[Path],
    batch_size: int | None,
) -> UpsertResult:
    """``run_upsert`` on an open index."""
    from visearch.catalogue import replay
    from visearch.data.manifest import MANIFEST_COLUMNS, load_manifest, manifest_hash
    from visearch.data.meta import caption_columns
    from visearch.embed import read_embeddings
    from visearch.index import UPSERT_BATCH, point_id
    from visearch.index.semantic import model_name
    from visearch.index.versions import meaning_columns, schema_hash
    from visearch.neighbours import ensure_stats

    manifest = load_manifest(manifest_dir)
    keys, vectors, model_version = read_embeddings(embeddings_dir)
    if keys != manifest["key"].tolist():
        raise IndexIntegrityError(f"{embeddings_dir} does not match the manifest; re-run embed")
    publish_model(store, category.name, model_dir)
    previous = index.live(category.name)
    # The schema is part of the identity: after a registry edit to fields/captions the live version
    # is not reused; a new one gets the payload indexes and caption vectors (the old stays for rollback).
    # So does installing the sentence model: the new version gets semantic caption vectors.
    semantic = bool(meaning_columns(category.captions, category.meaning) and model_name())
    schema = schema_hash(category.fields, category.captions, model_name(), category.meaning)
    version = index.create(
        category.name,
        model_version,
        manifest_hash(manifest),
        vectors.shape[1],
        category.fields,
        schema,
        semantic=semantic,
    )
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
        [payload_for(manifest.iloc[i], captions, store, category.fields) for i in todo],
        batch_size=batch_size or UPSERT_BATCH,
        captions=category.captions,
        semantic=semantic,
        meaning=category.meaning,
        progress=True,
    )
    count = index.count(version.name)
    if count != len(ids):
        raise IndexIntegrityError(f"{version.name} holds {count} points, expected {len(ids)}: alias not swapped")
    index.seal(version.name)
    # Measured on the finished version, before it goes live: a live version always has them.
    stats = ensure_stats(index, store, version.name, ids, threshold=threshold)
    # What users changed while this run built the version goes into it, then the alias swaps
    # (under the category's write lock): no add is lost, no delete comes back.
    replayed = replay(
        index,
        store,
        category,
        version,
        changes_seq(manifest_dir),
        _lazy_embed(settings, store, index, category),
        settings.home / "locks",
    )
    dropped = index.drop_old(category.name, settings.keep_index_versions)
    prune_models(store, index, category.name, dropped)
    return UpsertResult(
        version.name, count, previous.name if previous else None, dropped, bool(done), stats, replayed.records
    )


def _lazy_embed(settings: Settings, store: ObjectStore, index: VectorIndex, category: Category) -> Embed:
    """Embed replayed images with the model of the version they go into (loaded only if a record needs it)."""
    from visearch.categories import Registry
    from visearch.live_writes import engine_embed
    from visearch.search import SearchEngine

    loaded: list[Embed] = []

    def embed(version: CollectionVersion, datas: Sequence[bytes]) -> np.ndarray:
        if not loaded:
            engine = SearchEngine(settings, Registry(categories=[category]), store, index)
            loaded.append(engine_embed(engine, category.name))
        return loaded[0](version, datas)

    return embed


def upsert_step(
    category: str, manifest_dir: Path, model_dir: Path, embeddings_dir: Path | Sequence[Path], run_id: str
) -> UpsertResult:
    """The pipeline entry: ``run_upsert`` in the category's MLflow run, which it ends.

    ``embeddings_dir``: the embed step's output, or the outputs of all its shards.
    """
    from visearch.stages.tracked import tracked_step

    with tracked_step(run_id) as (ctx, run):
        result = run_upsert(*ctx.for_stage(category), manifest_dir, model_dir, embeddings_dir, run=run)
    run.end()
    print(f"index {category}: alias -> {result.collection} ({result.count} points, reused={result.reused})")
    return result
