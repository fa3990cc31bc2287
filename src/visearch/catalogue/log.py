"""A category's ordered change log in the object store: what users added, replaced and removed.

Layout under the category's data prefix (``datasets/<category>``)::

    images/changes/<sha256[:32]><ext>     the bytes of every added or replacing image (content-addressed)
    changes/log/<seq:012d>.json           one record per change, in order
    changes/applied/<collection>.json     the last record applied to an index version
    changes/built/<collection>.json       the log position the version's data was read at (its training data)

An image object is written before its record and a record is one object written atomically, so a
writer killed at any point leaves either a complete record or none (at most an orphan image).
Sequence numbers are assigned under the category lock (:mod:`visearch.catalogue.lock`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from PIL import Image

from visearch.categories import Category
from visearch.errors import NotFoundError
from visearch.storage import ObjectStore

Op = Literal["add", "replace", "remove"]
SEQ_DIGITS = 12
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"))


@dataclass(frozen=True)
class ChangeRecord:
    """One change: ``row`` holds the meta CSV columns but ``file`` (class, label, captions); empty for a remove."""

    seq: int
    op: Op
    file: str
    row: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    key: str = ""
    new_class: bool = False
    time: str = ""

    def to_json(self) -> bytes:
        """The record as stored."""
        # vars, not asdict: the same fields (all flat but ``row``, which json reads as it is), without
        # asdict's deep copy of each value (a tenth of a sync's time per record).
        return json.dumps(vars(self), sort_keys=True, default=_plain).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ChangeRecord:
        """A stored record."""
        return cls(**json.loads(data))


def _plain(value: Any) -> Any:
    """Numpy scalars (rows read with pandas) as Python values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def digest_of(data: bytes) -> str:
    """sha256 of image bytes (hex): the manifest's ``digest`` column uses the same."""
    return hashlib.sha256(data).hexdigest()


def suffix_of(data: bytes) -> str:
    """The file extension of the image format (``.bin`` when PIL does not name it).

    The common formats by their first bytes (an open by PIL cost 0.1 ms per synced image), others by PIL.
    """
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    try:
        with Image.open(io.BytesIO(data)) as image:
            return SUFFIXES.get(str(image.format), ".bin")
    except Exception:  # noqa: BLE001 - the bytes were validated before; a name is all this needs
        return ".bin"


class ChangeLog:
    """The change log of one category in an object store."""

    def __init__(self, store: ObjectStore, category: Category) -> None:
        self.store = store
        self.category = category
        self.prefix = f"{category.data_prefix}/changes"
        # Records never change once written and seqs are contiguous (assigned under the lock): after
        # one listing, the records read so far are kept and only the next seqs are probed.
        self._known: list[ChangeRecord] | None = None

    # --- images ----------------------------------------------------------------------------
    def put_image(self, data: bytes) -> tuple[str, str]:
        """Store the bytes under their content key (once); returns (digest, key)."""
        digest = digest_of(data)
        key = f"{self.category.data_prefix}/images/changes/{digest[:32]}{suffix_of(data)}"
        if not self.store.exists(key):
            self.store.put_bytes(key, data)
        return digest, key

    # --- records ---------------------------------------------------------------------------
    def _record_key(self, seq: int) -> str:
        return f"{self.prefix}/log/{seq:0{SEQ_DIGITS}d}.json"

    def _seqs(self) -> list[int]:
        seqs = []
        for key in self.store.list(f"{self.prefix}/log"):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                seqs.append(int(name[:-5]))
        return sorted(seqs)

    def _refresh(self) -> list[ChangeRecord]:
        """Every record, oldest first: listed once, then only the records after the last one read."""
        if self._known is None:
            self._known = [ChangeRecord.from_json(self.store.get_bytes(self._record_key(s))) for s in self._seqs()]
        while True:
            try:
                data = self.store.get_bytes(self._record_key((self._known[-1].seq if self._known else 0) + 1))
            except NotFoundError:
                return self._known
            self._known.append(ChangeRecord.from_json(data))

    def last_seq(self) -> int:
        """The sequence number of the newest record (0: no record yet)."""
        known = self._refresh()
        return known[-1].seq if known else 0

    def records(self, after: int = 0, upto: int | None = None) -> list[ChangeRecord]:
        """The records with ``after < seq <= upto`` (``upto`` None: all), oldest first."""
        return [r for r in self._refresh() if r.seq > after and (upto is None or r.seq <= upto)]

    def append(
        self,
        op: Op,
        file: str,
        row: dict[str, Any] | None = None,
        *,
        digest: str = "",
        key: str = "",
        new_class: bool = False,
    ) -> ChangeRecord:
        """Write the next record (call under the category lock: it assigns the sequence number)."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = ChangeRecord(self.last_seq() + 1, op, file, dict(row or {}), digest, key, new_class, stamp)
        self.store.put_bytes(self._record_key(record.seq), record.to_json())
        if self._known is not None:
            self._known.append(record)
        return record

    # --- what each index version holds -----------------------------------------------------
    def _applied_key(self, collection: str) -> str:
        return f"{self.prefix}/applied/{collection}.json"

    def applied(self, collection: str) -> int | None:
        """The last record applied to ``collection``; None when it has no marker (built before the log)."""
        try:
            return int(json.loads(self.store.get_bytes(self._applied_key(collection)))["seq"])
        except NotFoundError:
            return None

    def mark_applied(self, collection: str, seq: int) -> None:
        """Record that ``collection`` holds every change up to ``seq`` (after applying them)."""
        self.store.put_bytes(self._applied_key(collection), json.dumps({"seq": seq}).encode("utf-8"))

    # --- what each index version was built (and its model trained) from ---------------------
    def _built_key(self, collection: str) -> str:
        return f"{self.prefix}/built/{collection}.json"

    def built_from(self, collection: str) -> int | None:
        """The log position ``collection``'s data was read at; None when not recorded (built before the marker).

        Unlike :meth:`applied`, which every live write advances, this stays put: the records after
        it are the changes the version's model has not been trained on.
        """
        try:
            return int(json.loads(self.store.get_bytes(self._built_key(collection)))["seq"])
        except NotFoundError:
            return None

    def mark_built_from(self, collection: str, seq: int) -> None:
        """Record the log position ``collection`` was built from (once: a rollback's replay keeps the first)."""
        if self.built_from(collection) is None:
            self.store.put_bytes(self._built_key(collection), json.dumps({"seq": seq}).encode("utf-8"))
