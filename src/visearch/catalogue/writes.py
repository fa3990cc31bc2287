"""Add, replace and remove one image of a live category: change record first, then the live index.

Each write holds the category lock: it first applies any record the live version missed (a writer
killed between its record and its index write), then appends its own record and applies it.
So after a crash an image is either absent (no record: at most an orphan image object) or, from
the next write or :func:`catch_up` on, fully present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from visearch.catalogue.apply import Applied, Embed, apply_records
from visearch.catalogue.lock import WAIT_SECONDS, category_lock
from visearch.catalogue.log import ChangeLog, ChangeRecord, digest_of, suffix_of
from visearch.catalogue.rows import check_file_name, check_row
from visearch.catalogue.view import catalogue_view
from visearch.categories import Category
from visearch.data.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DuplicateImageError, NotFoundError, UnknownImageError
from visearch.index import CollectionVersion, VectorIndex, point_id
from visearch.storage import ObjectStore


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the point id, its file, the record (None: nothing changed), the version written."""

    id: str
    file: str
    record: ChangeRecord | None
    version: CollectionVersion
    new_class: bool = False

    @property
    def created(self) -> bool:
        """False when the write changed nothing (the same add sent again)."""
        return self.record is not None

    @property
    def model_version(self) -> str:
        """The model that embedded the image (the live version's)."""
        return self.version.model_version


@dataclass
class Catalogue:
    """The living catalogue of one category: its change log, its live index, its write lock.

    ``embed`` turns image bytes into vectors with the model of a given index version; ``lock_dir``
    is where the category lock lives (``<home>/locks``).
    """

    store: ObjectStore
    index: VectorIndex
    category: Category
    embed: Embed
    lock_dir: Path
    wait: float = WAIT_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def log(self) -> ChangeLog:
        """The category's change log."""
        return ChangeLog(self.store, self.category)

    # --- reads ------------------------------------------------------------------------------
    def base_rows(self) -> pd.DataFrame:
        """The usable rows of the category's meta CSV (empty when it has none: a catalogue started by adds).

        Checked as the pipeline checks them (integer labels, bad rows dropped), so a write sees the
        rows a run will see.
        """
        key = f"{self.category.data_prefix}/{self.category.meta}"
        try:
            return check_rows(parse_meta(self.store.get_bytes(key), key), DataReport())
        except NotFoundError:
            return pd.DataFrame({"file": [], "class": [], "label": []})

    def rows(self, upto: int | None = None) -> pd.DataFrame:
        """The category's rows now (or at log position ``upto``): base rows with the change log applied."""
        return catalogue_view(self.base_rows(), self.log.records(upto=upto), self.category)

    # --- writes -----------------------------------------------------------------------------
    def add(self, data: bytes, row: Mapping[str, Any]) -> WriteResult:
        """Add one image with its row (``class`` required; ``file`` optional, else named by its content).

        The same bytes and row sent again change nothing and give the same id.

        Raises:
            InvalidImageError: the bytes are no usable image (ImageTooLargeError: over the limits).
            InvalidRowError: the row breaks a rule of :func:`visearch.catalogue.rows.check_row`.
            DuplicateImageError: the file is already in the category with other bytes or another row.
            NotFoundError: the category has no live index.
        """
        decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        digest = digest_of(data)
        given = row.get("file") if isinstance(row, Mapping) else None
        file = check_file_name(str(given)) if given else f"added/{digest[:16]}{suffix_of(data)}"
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self._caught_up()
            current = self.rows()
            existing = current[current["file"].astype(str) == file]
            checked = check_row(row, current[current["file"].astype(str) != file], self.category)
            pid = point_id(self.category.name, file)
            if not existing.empty:
                if self._same(existing.iloc[0], digest, checked.values):
                    return WriteResult(pid, file, None, live)
                raise DuplicateImageError(f"file: {file} is already in category {self.category.name!r} as {pid}")
            _, key = self.log.put_image(data)  # the bytes before the record: a crash leaves no record
            record = self.log.append("add", file, checked.values, digest=digest, key=key, new_class=checked.new_class)
            self._apply(live, [record])
            return WriteResult(pid, file, record, live, checked.new_class)

    def replace(self, pid: str, data: bytes | None = None, row: Mapping[str, Any] | None = None) -> WriteResult:
        """Replace an image's bytes and/or row (``row`` values merge into the current row).

        Raises:
            UnknownImageError: no image of the category has this id.
            InvalidImageError, InvalidRowError: as for :meth:`add`.
        """
        if data is not None:
            decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self._caught_up()
            current = self.rows()
            found = self._find(current, pid)
            others = current[current["file"].astype(str) != found["file"]]
            merged = {**_row_values(found), **(row or {})}
            merged.pop("file", None)
            checked = check_row(merged, others, self.category)
            digest, key = str(found.get("digest") or ""), str(found["key"])
            if data is not None:
                digest, key = self.log.put_image(data)
            record = self.log.append(
                "replace", str(found["file"]), checked.values, digest=digest, key=key, new_class=checked.new_class
            )
            self._apply(live, [record])
            return WriteResult(pid, str(found["file"]), record, live, checked.new_class)

    def remove(self, pid: str) -> WriteResult:
        """Remove an image: gone from the live index at once and from the category's data.

        Raises:
            UnknownImageError: no image of the category has this id.
        """
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self._caught_up()
            found = self._find(self.rows(), pid)
            record = self.log.append("remove", str(found["file"]))
            self._apply(live, [record])
            return WriteResult(pid, str(found["file"]), record, live)

    def catch_up(self) -> Applied:
        """Apply to the live version every record it has not seen (e.g. at service start, after a crash)."""
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self.index.require_live(self.category.name)
            return self._apply(live, self.log.records(after=self.log.applied(live.name) or 0))

    # --- helpers ----------------------------------------------------------------------------
    def _caught_up(self) -> CollectionVersion:
        """The live version (read under the lock: a swap cannot slip in), with missed records applied."""
        live = self.index.require_live(self.category.name)
        self._apply(live, self.log.records(after=self.log.applied(live.name) or 0))
        return live

    def _apply(self, version: CollectionVersion, records: list[ChangeRecord]) -> Applied:
        applied = apply_records(self.index, self.store, self.category, version, records, self.embed, wait=self.wait)
        if records:
            self.log.mark_applied(version.name, applied.seq)
        return applied

    def _find(self, rows: pd.DataFrame, pid: str) -> pd.Series:
        ids = [point_id(self.category.name, str(file)) for file in rows["file"]]
        if pid not in ids:
            raise UnknownImageError(f"id: no image {pid} in category {self.category.name!r}")
        return rows.iloc[ids.index(pid)]

    def _same(self, found: pd.Series, digest: str, values: dict[str, Any]) -> bool:
        stored = str(found.get("digest") or "") if "digest" in found else ""
        if not stored or stored == "nan":
            stored = digest_of(self.store.get_bytes(str(found["key"])))
        return stored == digest and all(_equal(found.get(column), value) for column, value in values.items())


def _row_values(row: pd.Series) -> dict[str, Any]:
    skip = {"file", "key", "digest", "split"}
    # numpy scalars become Python values: a row check wants ints and floats, not numpy's.
    return {
        str(k): (None if _missing(v) else getattr(v, "item", lambda v=v: v)()) for k, v in row.items() if k not in skip
    }


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _equal(stored: Any, value: Any) -> bool:
    if _missing(stored) and value is None:
        return True
    return str(stored) == str(value)
