"""Apply change records to an index version: upsert added/replaced points, delete removed ones.

Works on both engines through three backend methods beyond :class:`visearch.index.types.IndexBackend`:
``acquire`` (the embedded version's writer lock), ``delete`` and ``commit`` (publish to readers
in every process); a Qdrant server needs only ``delete``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from visearch.catalogue.log import ChangeRecord
from visearch.catalogue.view import net_changes
from visearch.categories import Category
from visearch.index import CollectionVersion, VectorIndex, point_id
from visearch.index.types import Durable
from visearch.index.versions import has_semantic
from visearch.storage import ObjectStore

# Vectors of image bytes, from the model of the given index version (its ``model_version``).
Embed = Callable[[CollectionVersion, Sequence[bytes]], np.ndarray]
CORE = ("file", "class", "label")


class LiveBackend(Protocol):
    """The backend methods a catalogue write needs (EdgeBackend and QdrantBackend have them)."""

    def acquire(self, collection: str, wait: float = ...) -> None:
        """Take the version's writer lock (embedded) or nothing (server)."""
        ...

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id."""
        ...

    def commit(self, collection: str, durable: Durable | None = None) -> None:
        """Make the writes visible to readers in every process and release the writer lock.

        With ``durable``: a group commit, told when the writes are on disk (see ``EdgeBackend.commit``).
        """
        ...


@dataclass(frozen=True)
class Applied:
    """What one apply did: points written, points deleted, the last record's sequence number."""

    upserted: int
    deleted: int
    seq: int


def live_backend(index: VectorIndex) -> LiveBackend:
    """The index's backend seen as one that takes catalogue writes."""
    return cast(LiveBackend, index.backend)


def payload(record: ChangeRecord, category: Category, store: ObjectStore) -> dict[str, Any]:
    """The point payload of an added or replaced image: the shape ``steps.payload_for`` gives pipeline points.

    Copied rather than imported: the catalogue sits below the pipeline steps (import layers).
    """
    row = record.row
    values: dict[str, Any] = {
        "file": record.file,
        "class": row["class"],
        "label": int(row["label"]),
        "image_key": record.key,
        "image_uri": store.uri(record.key),
    }
    declared = dict.fromkeys([*category.fields, *category.captions])
    for column in [*declared, *(c for c in row if c not in CORE and c not in declared)]:
        values[column] = row.get(column)
    return values


def delete_points(index: VectorIndex, collection: str, ids: Sequence[str]) -> None:
    """Delete points from one collection (the façade's missing ``delete``); missing ids are ignored."""
    if ids:
        live_backend(index).delete(collection, ids)


def apply_records(
    index: VectorIndex,
    store: ObjectStore,
    category: Category,
    version: CollectionVersion,
    records: Iterable[ChangeRecord],
    embed: Embed,
    *,
    wait: float = 30.0,
    durable: Durable | None = None,
) -> Applied:
    """Apply the net effect of ``records`` (the last record per file) to ``version`` in one write.

    Idempotent: ids are ``point_id(category, file)``, an upsert overwrites and a delete of a
    missing point is nothing, so applying the same records twice leaves the same points.
    ``durable``: a group commit (the engine may flush later; it calls ``durable`` then); without
    it the writes are on disk when this returns. Not called when the write failed.
    """
    records = list(records)
    if not records:
        return Applied(0, 0, 0)
    net = list(net_changes(records).values())
    writes = [r for r in net if r.op != "remove"]
    removes = [point_id(category.name, r.file) for r in net if r.op == "remove"]
    vectors = embed(version, [store.get_bytes(r.key) for r in writes]) if writes else None
    backend = live_backend(index)
    backend.acquire(version.name, wait)
    committed = False
    try:
        if writes and vectors is not None:
            index.upsert(
                version.name,
                [point_id(category.name, r.file) for r in writes],
                np.asarray(vectors, dtype=np.float32),
                [payload(r, category, store) for r in writes],
                captions=category.captions,
                # An added image's caption meaning is searchable at once where the version has the vectors.
                semantic=has_semantic(version, category.fields, category.captions, category.meaning),
                meaning=category.meaning,
            )
        delete_points(index, version.name, removes)
        committed = True
        backend.commit(version.name, durable)
    finally:
        if not committed:
            backend.commit(version.name)  # after a failure: releases the lock; the marker is not advanced
    return Applied(len(writes), len(removes), max(r.seq for r in records))


def row_of(record: ChangeRecord) -> Mapping[str, Any]:
    """The record's row with its file name (what a meta CSV row holds)."""
    return {"file": record.file, **record.row}
