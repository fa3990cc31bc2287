"""Add, replace and remove images of a live category: change records first, then the live index.

Each write holds the category lock: it first applies any record the live version missed (a writer
killed between its record and its index write), then appends its own records and applies them.
So after a crash an image is either absent (no record: at most an orphan image object) or, from
the next write or :func:`catch_up` on, fully present. :meth:`Catalogue.write_many` does a batch
of writes under one lock, one read of the rows and one index transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from visearch.catalogue.apply import Applied, Embed, apply_records
from visearch.catalogue.lock import WAIT_SECONDS, category_lock
from visearch.catalogue.log import ChangeLog, ChangeRecord, Op, digest_of, suffix_of
from visearch.catalogue.rows import allowed_in, check_file_name, check_row_in
from visearch.catalogue.state import Row, RowState
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
    the parsed meta CSV (re-parsed only when it is written again), the log's records and the point
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
    _base: tuple[str, pd.DataFrame] | None = field(default=None, init=False, repr=False)  # fingerprint, rows
    _ids: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # point id -> file
    _state: RowState | None = field(default=None, init=False, repr=False)
    _unflushed: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # version -> seq not on disk

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
        rows a run will see. Parsed again only when the CSV is written again; do not modify the frame.
        """
        key = f"{self.category.data_prefix}/{self.category.meta}"
        try:
            # A metadata read: reading a 70,000-row CSV to compare its bytes cost ~1 ms per write.
            mark = self.store.fingerprint(key)
            if self._base is not None and self._base[0] == mark:
                return self._base[1]
            data = self.store.get_bytes(key)  # if written again meanwhile: the next call's mark differs
        except NotFoundError:
            return pd.DataFrame({"file": [], "class": [], "label": []})
        frame = check_rows(parse_meta(data, key), DataReport())
        if "key" not in frame.columns:  # computed once here, not by every catalogue_view
            frame["key"] = [image_key(self.category, str(file)) for file in frame["file"]]
        self._base = (mark, frame)
        return frame

    def rows(self, upto: int | None = None) -> pd.DataFrame:
        """The category's rows now (or at log position ``upto``): base rows with the change log applied."""
        return catalogue_view(self.base_rows(), self.log.records(upto=upto), self.category)

    def _row_state(self) -> RowState:
        """The rows now as a :class:`RowState`: built once, then advanced by the records written since."""
        base = self.base_rows()
        if self._state is None or self._state.base is not base:  # a new meta CSV: every row may differ
            self._state = RowState.build(base, self.log.records())
        else:
            self._state.advance(self.log.records(after=self._state.seq))
        return self._state

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
            return self._apply(live, self.log.records(after=self._applied(live)))

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
            batch = _Batch(self._row_state(), self.category)
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
        checked = check_row_in(merged, batch.allowed(), batch.labels(without=file), self.category)
        digest, key = str(found.get("digest") or ""), str(found["key"])
        if change.data is not None:
            digest, key = self.log.put_image(change.data)
        record = self.log.append("replace", file, checked.values, digest=digest, key=key, new_class=checked.new_class)
        batch.note(file, {**checked.values, "key": key, **({"digest": digest} if digest else {})})
        return WriteResult(change.id, file, record, live, checked.new_class)

    def _add(self, live: CollectionVersion, batch: _Batch, data: bytes, row: Mapping[str, Any]) -> WriteResult:
        digest = digest_of(data)
        given = row.get("file") if isinstance(row, Mapping) else None
        file = check_file_name(str(given)) if given else f"added/{digest[:16]}{suffix_of(data)}"
        pid = point_id(self.category.name, file)
        existing = batch.row(file)
        if existing is not None:
            checked = check_row_in(row, batch.allowed(), batch.labels(without=file), self.category)
            if self._same(existing, digest, checked.values):
                return WriteResult(pid, file, None, live)
            raise DuplicateImageError(f"file: {file} is already in category {self.category.name!r} as {pid}")
        checked = check_row_in(row, batch.allowed(), batch.labels(), self.category)
        _, key = self.log.put_image(data)  # the bytes before the record: a crash leaves no record
        record = self.log.append("add", file, checked.values, digest=digest, key=key, new_class=checked.new_class)
        self._ids[pid] = file
        batch.note(file, {**checked.values, "key": key, "digest": digest})
        return WriteResult(pid, file, record, live, checked.new_class)

    # --- helpers ----------------------------------------------------------------------------
    def _caught_up(self) -> CollectionVersion:
        """The live version (read under the lock: a swap cannot slip in), with missed records applied."""
        live = self.index.require_live(self.category.name)
        self._apply(live, self.log.records(after=self._applied(live)))
        return live

    def _applied(self, version: CollectionVersion) -> int:
        """The last record ``version`` holds: on disk (its marker), or in this process's open writer."""
        return max(self.log.applied(version.name) or 0, self._unflushed.get(version.name, 0))

    def _apply(self, version: CollectionVersion, records: list[ChangeRecord]) -> Applied:
        """Apply ``records`` as one group-committed write: the marker advances once they are on disk.

        Until then the writer's handle holds them (queries of this process see them) and
        ``_unflushed`` says so; a crash before the flush leaves the marker behind, and the next
        write or :meth:`catch_up` applies the records again (an apply is idempotent).
        """
        if not records:
            return Applied(0, 0, 0)
        name, seq = version.name, max(r.seq for r in records)

        def durable(flushed: bool) -> None:
            if flushed:
                self.log.mark_applied(name, seq)
            if not flushed or self._unflushed.get(name, 0) <= seq:
                self._unflushed.pop(name, None)  # lost: the marker on disk says what the version holds

        self._unflushed[name] = seq  # before the commit: a writer that does not linger calls durable in it
        try:
            return apply_records(
                self.index, self.store, self.category, version, records, self.embed, wait=self.wait, durable=durable
            )
        except BaseException:
            self._unflushed.pop(name, None)  # unsure what the handle holds: the next write re-applies from disk
            raise

    def _find(self, batch: _Batch, pid: str) -> Row:
        """The row of a point id; each file's id is computed once (uuid5 of every row per write was slow)."""
        if pid not in self._ids:
            known = set(self._ids.values())
            names = [name for name in batch.files if name not in known]
            self._ids.update({point_id(self.category.name, name): name for name in names})
        found = batch.row(self._ids[pid]) if pid in self._ids else None
        if found is None:
            raise UnknownImageError(f"id: no image {pid} in category {self.category.name!r}")
        return found

    def _same(self, found: Row, digest: str, values: dict[str, Any]) -> bool:
        stored = str(found.get("digest") or "") if "digest" in found else ""
        if not stored or stored == "nan":
            stored = digest_of(self.store.get_bytes(str(found["key"])))
        return stored == digest and all(_equal(found.get(column), value) for column, value in values.items())


class _Batch:
    """The rows a batch checks against: the category's rows (a :class:`RowState`) plus the batch's own writes.

    The state is not touched: the batch's records advance it once they are written. Every lookup
    is a dict's, so an item costs the same whether the category holds 1,000 rows or 70,000.
    """

    def __init__(self, state: RowState, category: Category) -> None:
        self.state = state
        self.category = category
        self._written: dict[str, Row] = {}  # file -> its row after this batch's writes
        self._dropped: set[str] = set()

    @property
    def files(self) -> Iterable[str]:
        """The files of the rows read under the lock."""
        return self.state.rows.keys()

    def row(self, file: str) -> Row | None:
        """The file's row now, or None."""
        if file in self._dropped:
            return None
        if file in self._written:
            return {**self.state.base_rows.get(file, {}), "file": file, **self._written[file]}
        return self.state.rows.get(file)

    def allowed(self) -> list[str]:
        """The columns a row may set."""
        return allowed_in(self.state.columns, self.category)

    def labels(self, without: str = "") -> dict[str, int]:
        """Each class's label now, with file ``without`` left out (a replace may move a class's only image).

        A class whose every image the batch removed or moved is gone; a class new in the batch is in.
        """
        touched = self._dropped | self._written.keys() | ({without} if without else set())
        removed = [row for file in touched if (row := self.state.rows.get(file)) is not None]
        added = [values for file, values in self._written.items() if file != without]  # class and label always
        return self.state.labels_with(removed, added)

    def note(self, file: str, values: Mapping[str, Any]) -> None:
        """Remember a write of this batch."""
        self._dropped.discard(file)
        self._written[file] = {**self._written.get(file, {}), **values}

    def drop(self, file: str) -> None:
        """Remember a removal of this batch."""
        self._written.pop(file, None)
        self._dropped.add(file)


def _one(results: list[WriteResult | Exception]) -> WriteResult:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result


def _row_values(row: Mapping[str, Any]) -> dict[str, Any]:
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
