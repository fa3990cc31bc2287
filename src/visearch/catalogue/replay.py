"""Replay: carry the changes that arrived while a pipeline run built a collection into it, then swap.

A run reads the category's rows at log position ``since`` (:meth:`Catalogue.rows`), trains and
embeds them, and writes a new collection. Meanwhile users keep adding and removing images (they
land in the change log and the live version). Before the new collection goes live, the upsert
step calls :func:`replay`: the records after ``since`` are applied to it (net per file, in log
order), the last few again under the category lock together with the alias swap, so no write can
reach the old version after the replay read the log. Nothing is lost and no delete comes back.
The same call re-applies the log to an older version on rollback (``since``: its applied marker).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visearch.catalogue.apply import Embed, apply_records
from visearch.catalogue.lock import WAIT_SECONDS, category_lock
from visearch.catalogue.log import ChangeLog
from visearch.categories import Category
from visearch.index import CollectionVersion, VectorIndex
from visearch.storage import ObjectStore


@dataclass(frozen=True)
class ReplayResult:
    """Records replayed (outside and inside the lock), points written and deleted, the log position reached."""

    records: int
    locked_records: int
    upserted: int
    deleted: int
    seq: int
    swapped: bool


def replay(
    index: VectorIndex,
    store: ObjectStore,
    category: Category,
    version: CollectionVersion,
    since: int,
    embed: Embed,
    lock_dir: Path,
    *,
    swap: bool = True,
    wait: float = WAIT_SECONDS,
) -> ReplayResult:
    """Apply every record after ``since`` to ``version``, then (``swap``) point the alias at it.

    Most records are applied without the lock (embedding them may take a while); the ones that
    arrived meanwhile are applied under it, and the alias swaps before it is released. Safe to
    repeat: a retried step applies the same net changes again.
    """
    log = ChangeLog(store, category)
    first = log.records(after=since)
    done = apply_records(index, store, category, version, first, embed, wait=wait)
    reached = max(since, done.seq)
    with category_lock(lock_dir, category.name, wait=wait):
        tail = log.records(after=reached)
        late = apply_records(index, store, category, version, tail, embed, wait=wait)
        reached = max(reached, late.seq)
        log.mark_applied(version.name, reached)
        log.mark_built_from(version.name, since)  # what its model was trained on: for change counts
        if swap:
            index.swap_alias(category.name, version.name)
    return ReplayResult(
        len(first) + len(tail), len(tail), done.upserted + late.upserted, done.deleted + late.deleted, reached, swap
    )
