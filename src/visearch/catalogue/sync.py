"""Sync a folder (meta CSV + images) into a live category: a plan by content hash and row values, then its writes.

The folder is the truth: a file it names that the category lacks is an add; a file both hold is a
replacement when its bytes (sha256, :func:`visearch.catalogue.log.digest_of`) or its row values
differ; a file the category holds that the folder's CSV does not name is a removal. A bad row or
image costs that row (reported), never the sync; a CSV that cannot be read at all is one error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from visearch.catalogue.log import digest_of
from visearch.catalogue.rows import allowed_columns, check_file_name, check_row
from visearch.catalogue.writes import Catalogue
from visearch.data.images import decode_image
from visearch.data.meta import DataReport, caption_columns, check_rows, parse_meta
from visearch.errors import DataError, InvalidImageError, InvalidRowError, VisearchError
from visearch.index import point_id

SyncOp = Literal["add", "replace", "remove"]
META_FILE = "meta.csv"


@dataclass(frozen=True)
class SyncItem:
    """One planned write: ``row`` holds checked values (empty for a remove), ``changes`` says why a replace."""

    op: SyncOp
    file: str
    id: str
    row: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    digest: str = ""
    changes: tuple[str, ...] = ()

    @property
    def new_bytes(self) -> bool:
        """Whether the write carries image bytes (an add, or a replace whose bytes differ)."""
        return self.op == "add" or "bytes" in self.changes

    def line(self) -> str:
        """One line of the plan: op, file, and the class or what changed."""
        detail = {"add": f"class {self.row.get('class')}", "replace": "; ".join(self.changes), "remove": self.id}
        return f"{self.op:<8} {self.file}  ({detail[self.op]})"


@dataclass
class SyncPlan:
    """What a sync would do: writes by kind, the files already equal, and the rows it cannot take."""

    category: str
    source: Path
    adds: list[SyncItem] = field(default_factory=list)
    replacements: list[SyncItem] = field(default_factory=list)
    removals: list[SyncItem] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def items(self) -> list[SyncItem]:
        """Every write, in the order they are applied: removals, replacements, adds."""
        return [*self.removals, *self.replacements, *self.adds]

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{self.category} <- {self.source}: {len(self.adds)} to add, {len(self.replacements)} to replace, "
            f"{len(self.removals)} to remove, {self.unchanged} unchanged, {len(self.skipped)} skipped"
        )

    def lines(self) -> list[str]:
        """The summary, one line per write and one per skipped row."""
        skipped = [f"skip     {file}: {reason}" for file, reason in self.skipped]
        return [self.summary(), *(item.line() for item in self.items), *skipped]


@dataclass
class SyncOutcome:
    """What applying a plan did: the writes done, the ones that failed (with why), the time it took."""

    done: list[SyncItem] = field(default_factory=list)
    failed: list[tuple[SyncItem, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Writes done per second of the apply."""
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0


def plan_sync(catalogue: Catalogue, source: Path, meta: str = META_FILE) -> SyncPlan:
    """Compare the folder ``source`` (``meta`` CSV + ``images/``) with the category's rows now; writes nothing.

    Raises:
        DataError: no readable CSV in the folder, or one without file/class/label columns.
        InvalidRowError: the CSV has a column the category does not know (``field`` names it).
        NotFoundError: the category has no live index.
    """
    category = catalogue.category
    catalogue.index.require_live(category.name)
    meta_path = source / meta
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: no such file; the folder needs {meta} (file, class, label, captions) + images")
    frame = parse_meta(meta_path.read_bytes(), str(meta_path))
    current = catalogue.rows()
    allowed = allowed_columns(current, category)
    for column in caption_columns(frame):
        if column not in allowed:
            raise InvalidRowError(column, f"unknown column in {meta_path}; this category has {', '.join(allowed)}")
    report = DataReport()
    kept = check_rows(frame, report)
    plan = SyncPlan(category.name, source, skipped=list(report.dropped))
    images = source / "images" if (source / "images").is_dir() else source
    stored = current.set_index(current["file"].astype(str), drop=False)
    for _, row in kept.iterrows():
        file = str(row["file"])
        try:
            item = _plan_row(catalogue, stored, file, _values(row), images)
        except (InvalidImageError, InvalidRowError) as exc:
            plan.skipped.append((file, str(exc)))
            continue
        if item is None:
            plan.unchanged += 1
        elif item.op == "add":
            plan.adds.append(item)
        else:
            plan.replacements.append(item)
    named = set(frame["file"].astype(str).str.strip())  # a skipped row keeps its image: it is not a removal
    for file in stored.index:
        if file not in named:
            plan.removals.append(SyncItem("remove", file, point_id(category.name, file)))
    return plan


def _plan_row(
    catalogue: Catalogue, stored: pd.DataFrame, file: str, values: dict[str, Any], images: Path
) -> SyncItem | None:
    check_file_name(file)
    path = images / file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"missing image: cannot read {path}: {exc.strerror or exc}") from exc
    decode_image(data, max_bytes=catalogue.max_bytes, max_pixels=catalogue.max_pixels)
    digest = digest_of(data)
    checked = check_row(values, stored[stored.index != file], catalogue.category)
    pid = point_id(catalogue.category.name, file)
    if file not in stored.index:
        return SyncItem("add", file, pid, checked.values, path, digest)
    old = stored.loc[file]
    changes = [] if _stored_digest(catalogue, old) == digest else ["bytes"]
    for column, value in checked.values.items():
        before = old.get(column)
        if not _same_value(before, value):
            changes.append(f"{column}: {_shown(before)} -> {_shown(value)}")
    return SyncItem("replace", file, pid, checked.values, path, digest, tuple(changes)) if changes else None


def _stored_digest(catalogue: Catalogue, row: pd.Series) -> str:
    """The sha256 of the category's bytes for a row: recorded for changed rows, read for base rows."""
    recorded = row.get("digest")
    if isinstance(recorded, str) and recorded:
        return recorded
    return digest_of(catalogue.store.get_bytes(str(row["key"])))


def apply_sync(catalogue: Catalogue, plan: SyncPlan, progress: Callable[[SyncItem], None] | None = None) -> SyncOutcome:
    """Apply a plan one write at a time (each its own catalogue write); a failed write is reported, not raised.

    ``progress`` is called after every write, done or failed (the CLI's progress bar).
    """
    outcome = SyncOutcome()
    started = time.monotonic()
    for item in plan.items:
        try:
            _apply_item(catalogue, item)
            outcome.done.append(item)
        except VisearchError as exc:
            outcome.failed.append((item, str(exc)))
        if progress:
            progress(item)
    outcome.seconds = time.monotonic() - started
    return outcome


def _apply_item(catalogue: Catalogue, item: SyncItem) -> None:
    if item.op == "remove":
        catalogue.remove(item.id)
        return
    data = _read(item.path) if item.new_bytes else None
    if item.op == "add" and data is not None:
        catalogue.add(data, {"file": item.file, **item.row})
    else:
        catalogue.replace(item.id, data, item.row)


def _read(path: Path | None) -> bytes:
    try:
        return path.read_bytes() if path else b""
    except OSError as exc:
        raise InvalidImageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def check_adds(
    catalogue: Catalogue, datas: Sequence[bytes], row: Mapping[str, Any], names: Sequence[str] | None = None
) -> None:
    """Validate a batch of adds before any is written: every image, the row, one file name for one image.

    ``names`` (e.g. the paths given) prefix an image's error message.

    Raises:
        InvalidImageError: an image is no usable image (ImageTooLargeError: over the limits).
        InvalidRowError: the row breaks a rule of :func:`visearch.catalogue.rows.check_row`.
        NotFoundError: the category has no live index.
    """
    catalogue.index.require_live(catalogue.category.name)
    if not isinstance(row, Mapping):
        raise InvalidRowError("row", "must be a JSON object of column values")
    for i, data in enumerate(datas):
        try:
            decode_image(data, max_bytes=catalogue.max_bytes, max_pixels=catalogue.max_pixels)
        except InvalidImageError as exc:  # ImageTooLargeError too: both take one message
            raise type(exc)(f"{names[i]}: {exc}" if names else str(exc)) from exc
    file = row.get("file")
    if file is not None:
        check_file_name(str(file))
        if len(datas) > 1:
            raise InvalidRowError("file", "one file name cannot name several images; add them one at a time")
    current = catalogue.rows()
    check_row(row, current[current["file"].astype(str) != str(file)], catalogue.category)


def _values(row: pd.Series) -> dict[str, Any]:
    """A CSV row's column values as Python values (empty cells None), without ``file``."""
    return {str(k): _python(v) for k, v in row.items() if k != "file"}


def _python(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars: a row check wants ints and floats, not numpy's
        return _python(value.item())
    return value


def _same_value(stored: Any, value: Any) -> bool:
    stored = _python(stored)
    if stored is None or value is None:
        return stored is None and value is None
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(value, numbers) and not isinstance(value, bool):
        return float(stored) == float(value)
    return str(stored) == str(value)


def _shown(value: Any) -> str:
    value = _python(value)
    return "(empty)" if value is None else str(value)
