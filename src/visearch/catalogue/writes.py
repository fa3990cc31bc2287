"""Add, replace and remove images of a live category: change records first, then the live index.

Each write holds the category lock: it first applies any record the live version missed (a writer
killed between its record and its index write), then appends its own records and applies them.
So after a crash an image is either absent (no record: at most an orphan image object) or, from
the next write or :func:`catch_up` on, fully present. :meth:`Catalogue.write_many` does a batch
of writes under one lock, one read of the rows and one index transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visearch.catalogue.apply import Applied, Embed, apply_records
from visearch.catalogue.lock import WAIT_SECONDS, category_lock
from visearch.catalogue.log import ChangeLog, ChangeRecord, Op, digest_of, suffix_of
from visearch.catalogue.rows import check_file_name, check_row
from visearch.catalogue.view import catalogue_view
from visearch.categories import Category
from visearch.data.checks import image_key
from visearch.data.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DuplicateImageError, InvalidImageError, InvalidRowError, NotFoundError, UnknownImageError
from visearch.index import CollectionVersion, VectorIndex, point_id
from visearch.storage import ObjectStore

# Writes per batch of write_many: one index transaction each (and one progress step of a sync).
BATCH = 64
# Row lookups of a batch done by scanning before it builds a file -> row dict.
SCANS = 4
# What costs one item of a batch, never the batch: bad bytes, a bad row, a conflict, an unknown id.
ITEM_ERRORS = (InvalidImageError, InvalidRowError, DuplicateImageError, UnknownImageError)


@dataclass(frozen=True)
class Change:
    """One write of a batch: an add (``data`` + ``row``), a replace (``id``; ``data`` and/or ``row``), a remove (``id``)."""

    op: Op
    data: bytes | None = None
    row: Mapping[str, Any] | None = None
    id: str = ""


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
    is where the category lock lives (``<home>/locks``). One object serves many writes: it keeps
    the parsed meta CSV (re-parsed only when its bytes change), the log's records and the point
    ids it has computed, so a write reads only what changed.
    """

    store: ObjectStore
    index: VectorIndex
    category: Category
    embed: Embed
    lock_dir: Path
    wait: float = WAIT_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    _log: ChangeLog | None = field(default=None, init=False, repr=False)
    _base: tuple[bytes, pd.DataFrame] | None = field(default=None, init=False, repr=False)
    _ids: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # point id -> file

    @property
    def log(self) -> ChangeLog:
        """The category's change log (one object: it keeps the records it has read)."""
        if self._log is None:
            self._log = ChangeLog(self.store, self.category)
        return self._log

    # --- reads ------------------------------------------------------------------------------
    def base_rows(self) -> pd.DataFrame:
        """The usable rows of the category's meta CSV (empty when it has none: a catalogue started by adds).

        Checked as the pipeline checks them (integer labels, bad rows dropped), so a write sees the
        rows a run will see. Parsed again only when the CSV's bytes changed; do not modify the frame.
        """
        key = f"{self.category.data_prefix}/{self.category.meta}"
        try:
            data = self.store.get_bytes(key)
        except NotFoundError:
            return pd.DataFrame({"file": [], "class": [], "label": []})
        if self._base is None or self._base[0] != data:  # a byte compare: far cheaper than a parse
            frame = check_rows(parse_meta(data, key), DataReport())
            if "key" not in frame.columns:  # computed once here, not by every catalogue_view
                frame["key"] = [image_key(self.category, str(file)) for file in frame["file"]]
            self._base = (data, frame)
        return self._base[1]

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
        return _one(self.write_many([Change("add", data, row)]))

    def replace(self, pid: str, data: bytes | None = None, row: Mapping[str, Any] | None = None) -> WriteResult:
        """Replace an image's bytes and/or row (``row`` values merge into the current row).

        Raises:
            UnknownImageError: no image of the category has this id.
            InvalidImageError, InvalidRowError: as for :meth:`add`.
        """
        return _one(self.write_many([Change("replace", data, row, pid)]))

    def remove(self, pid: str) -> WriteResult:
        """Remove an image: gone from the live index at once and from the category's data.

        Raises:
            UnknownImageError: no image of the category has this id.
        """
        return _one(self.write_many([Change("remove", id=pid)]))

    def write_many(self, changes: Sequence[Change], batch: int = BATCH) -> list[WriteResult | Exception]:
        """Apply ``changes`` in order, ``batch`` at a time: one lock, one rows read, one index transaction each.

        Every image is decoded before the lock is taken. A bad item (:data:`ITEM_ERRORS`) gets its
        error in its place of the result and costs nothing else; the others are written. An error
        of the index write itself is raised (the batch's records stay in the log: the next write or
        :meth:`catch_up` applies them).

        Raises:
            NotFoundError: the category has no live index.
            CatalogueBusyError, IndexBusyError: another writer held the category or its version.
        """
        results: list[WriteResult | Exception] = []
        for lo in range(0, len(changes), batch):
            results.extend(self._write_batch(changes[lo : lo + batch]))
        return results

    def catch_up(self) -> Applied:
        """Apply to the live version every record it has not seen (e.g. at service start, after a crash)."""
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self.index.require_live(self.category.name)
            return self._apply(live, self.log.records(after=self.log.applied(live.name) or 0))

    # --- one batch --------------------------------------------------------------------------
    def _write_batch(self, changes: Sequence[Change]) -> list[WriteResult | Exception]:
        results: list[WriteResult | Exception | None] = [None] * len(changes)
        for i, change in enumerate(changes):
            if change.data is not None:
                try:
                    decode_image(change.data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
                except InvalidImageError as exc:
                    results[i] = exc
        with category_lock(self.lock_dir, self.category.name, wait=self.wait):
            live = self._caught_up()
            batch = _Batch(self.rows())
            records: list[ChangeRecord] = []
            for i, change in enumerate(changes):
                if results[i] is not None:
                    continue
                try:
                    result = self._write_one(live, batch, change)
                except ITEM_ERRORS as exc:
                    results[i] = exc
                    continue
                results[i] = result
                if result.record is not None:
                    records.append(result.record)
            self._apply(live, records)
        return [r for r in results if r is not None]

    def _write_one(self, live: CollectionVersion, batch: _Batch, change: Change) -> WriteResult:
        if change.op == "add":
            return self._add(live, batch, change.data or b"", change.row or {})
        found = self._find(batch, change.id)
        file = str(found["file"])
        if change.op == "remove":
            batch.drop(file)
            return WriteResult(change.id, file, self.log.append("remove", file), live)
        merged = {**_row_values(found), **(change.row or {})}
        merged.pop("file", None)
        checked = check_row(merged, batch.others(file), self.category)
        digest, key = str(found.get("digest") or ""), str(found["key"])
        if change.data is not None:
            digest, key = self.log.put_image(change.data)
        record = self.log.append("replace", file, checked.values, digest=digest, key=key, new_class=checked.new_class)
        batch.note(file, checked.values)
        return WriteResult(change.id, file, record, live, checked.new_class)

    def _add(self, live: CollectionVersion, batch: _Batch, data: bytes, row: Mapping[str, Any]) -> WriteResult:
        digest = digest_of(data)
        given = row.get("file") if isinstance(row, Mapping) else None
        file = check_file_name(str(given)) if given else f"added/{digest[:16]}{suffix_of(data)}"
        pid = point_id(self.category.name, file)
        existing = batch.row(file)
        if existing is not None:
            checked = check_row(row, batch.others(file), self.category)
            if self._same(existing, digest, checked.values):
                return WriteResult(pid, file, None, live)
            raise DuplicateImageError(f"file: {file} is already in category {self.category.name!r} as {pid}")
        checked = check_row(row, batch.classes(), self.category)  # a new file: only the class labels matter
        _, key = self.log.put_image(data)  # the bytes before the record: a crash leaves no record
        record = self.log.append("add", file, checked.values, digest=digest, key=key, new_class=checked.new_class)
        self._ids[pid] = file
        batch.note(file, {**checked.values, "key": key, "digest": digest})
        return WriteResult(pid, file, record, live, checked.new_class)

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

    def _find(self, batch: _Batch, pid: str) -> pd.Series:
        """The row of a point id; each file's id is computed once (uuid5 of every row per write was slow)."""
        if pid not in self._ids:
            known = set(self._ids.values())
            names = [name for name in batch.files if name not in known]
            self._ids.update({point_id(self.category.name, name): name for name in names})
        found = batch.row(self._ids[pid]) if pid in self._ids else None
        if found is None:
            raise UnknownImageError(f"id: no image {pid} in category {self.category.name!r}")
        return found

    def _same(self, found: pd.Series, digest: str, values: dict[str, Any]) -> bool:
        stored = str(found.get("digest") or "") if "digest" in found else ""
        if not stored or stored == "nan":
            stored = digest_of(self.store.get_bytes(str(found["key"])))
        return stored == digest and all(_equal(found.get(column), value) for column, value in values.items())


class _Batch:
    """The rows a batch checks against: the rows read under the lock plus the batch's own writes so far.

    Kept small on purpose: a new row is checked against one row per class (its label) rather than
    against a copy of every row, and a file's row is found through a dict, so an item of a batch
    costs the same whether the category holds 1,000 rows or 70,000 (a mask and a de-duplication
    of every row per item held a sync to 30 images/s at 70,000).
    """

    def __init__(self, current: pd.DataFrame) -> None:
        self.current = current
        self.files = current["file"].astype(str)
        self._written: dict[str, dict[str, Any]] = {}  # file -> its row after this batch's writes
        self._dropped: set[str] = set()
        self._position: dict[str, int] | None = None  # file -> its row in ``current``, built after SCANS lookups
        self._lookups = 0
        self._firsts: pd.DataFrame | None = None  # one row of ``current`` per class
        self._left: Counter[str] = Counter()  # class -> rows of ``current`` the batch has not touched

    def row(self, file: str) -> pd.Series | None:
        """The file's row now, or None."""
        if file in self._dropped:
            return None
        if file in self._written:
            return pd.Series({"file": file, **self._written[file]})
        position = self._position_of(file)
        return None if position is None else self.current.iloc[position]

    def classes(self) -> pd.DataFrame:
        """One row per class (the batch's new classes included): enough to check a new file's row.

        A class whose every image the batch removed or moved is gone. Any row of a class stands
        for it: a class has one label, and the columns are the frame's.
        """
        if self._firsts is None:
            self._firsts = self.current.drop_duplicates("class")
            self._left = Counter(self.current["class"].astype(str).value_counts().to_dict())
            for file in self._dropped | self._written.keys():
                self._forget_current(file)
        firsts = self._firsts
        if any(count <= 0 for count in self._left.values()):
            firsts = firsts[[self._left.get(str(cls), 0) > 0 for cls in firsts["class"]]]
        # The batch's writes add a row only for a class the rows above lack (most adds join a known class).
        known = {cls for cls, count in self._left.items() if count > 0}
        new: dict[str, dict[str, Any]] = {}
        for file, values in self._written.items():
            cls = str(values.get("class"))
            if cls not in known and cls not in new:
                new[cls] = {"file": file, **values}
        return pd.concat([firsts, pd.DataFrame(list(new.values()))]) if new else firsts

    def others(self, file: str) -> pd.DataFrame:
        """Every row but ``file``'s (a replace may move a class's only image to another class)."""
        untouched = self._untouched()
        rest = untouched[untouched["file"].astype(str) != file]
        written = [{"file": f, **v} for f, v in self._written.items() if f != file]
        return pd.concat([rest, pd.DataFrame(written)]) if written else rest

    def _untouched(self) -> pd.DataFrame:
        """The rows read under the lock that this batch has neither removed nor rewritten."""
        touched = self._dropped | self._written.keys()
        return self.current[~self.files.isin(touched)] if touched else self.current

    def _position_of(self, file: str) -> int | None:
        """The file's row in ``current``: a scan for the first few lookups, then a dict.

        A lone add would pay ~20 ms at 70,000 rows to build the dict; a 64-image batch saves 2.7 ms per item.
        """
        if self._position is None:
            self._lookups += 1
            if self._lookups <= SCANS:
                found = np.flatnonzero((self.files == file).to_numpy())
                return int(found[0]) if len(found) else None
            self._position = {name: i for i, name in enumerate(self.files.tolist())}
        return self._position.get(file)

    def _forget_current(self, file: str) -> None:
        """A row of ``current`` the batch touches for the first time no longer stands for its class."""
        position = self._position_of(file)
        if position is not None:
            self._left[str(self.current["class"].iat[position])] -= 1

    def _touch(self, file: str) -> None:
        if self._firsts is not None and file not in self._dropped and file not in self._written:
            self._forget_current(file)

    def note(self, file: str, values: Mapping[str, Any]) -> None:
        """Remember a write of this batch."""
        self._touch(file)
        self._dropped.discard(file)
        self._written[file] = {**self._written.get(file, {}), **values}

    def drop(self, file: str) -> None:
        """Remember a removal of this batch."""
        self._touch(file)
        self._written.pop(file, None)
        self._dropped.add(file)


def _one(results: list[WriteResult | Exception]) -> WriteResult:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result


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
