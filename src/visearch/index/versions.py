"""Collection versions and point ids: the names the index gives what it stores.

Collection ``<category>__<version>`` with version ``<UTC time>-<model version>-<data hash>[-<schema>]``;
alias ``<category>`` names the live one. The model version in the name tells the search path
which model produced the vectors, so a rollback brings its model along; the schema hash names the
payload indexes and caption vectors the version was built with (the registry's ``fields`` and
``captions``), so a registry edit to them builds a new version instead of reusing the live one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

POINT_NAMESPACE = uuid.UUID("6f1d7f0e-2b7c-5d53-9a54-1c0a7e1f7a3e")
SEPARATOR = "__"


def point_id(category: str, file: str) -> str:
    """Deterministic id: re-running an upsert overwrites a point instead of duplicating it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{category}/{file}"))


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a point id the engines accept (they refuse a whole call for one bad id)."""
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def schema_hash(fields: Mapping[str, str], captions: Sequence[str]) -> str:
    """Short hash of an index schema: payload indexes (``fields``) and the caption columns of the text vectors.

    ``""`` when a category declares neither: its versions' names keep the three parts they had
    before the schema was named, so those stay reusable.
    """
    if not fields and not captions:
        return ""
    # Caption order counts: the columns' text is joined in that order (a semantic vector reads it so).
    text = json.dumps({"fields": dict(sorted(fields.items())), "captions": list(captions)}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class CollectionVersion:
    """One version of a category's index, i.e. one collection."""

    category: str
    created: str
    model_version: str
    data_hash: str
    schema: str = ""  # schema_hash of the fields/captions it was built with ("" = none declared)

    @classmethod
    def new(cls, category: str, model_version: str, data_hash: str, schema: str = "") -> CollectionVersion:
        """A version created now."""
        # Microseconds: versions created within one second still sort in creation order.
        created = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return cls(category, created, model_version, data_hash, schema)

    @property
    def name(self) -> str:
        """The collection name: ``<category>__<created>-<model version>-<data hash>[-<schema>]``."""
        schema = f"-{self.schema}" if self.schema else ""
        return f"{self.category}{SEPARATOR}{self.created}-{self.model_version}-{self.data_hash}{schema}"

    @classmethod
    def parse(cls, name: str) -> CollectionVersion | None:
        """The version a collection name stands for, or None if it is not a version's name."""
        category, sep, version = name.partition(SEPARATOR)
        parts = version.split("-")
        if not sep or len(parts) not in (3, 4) or not all(parts):
            return None
        return cls(category, *parts)


def schema_lag(live: CollectionVersion | None, fields: Mapping[str, str], captions: Sequence[str]) -> str | None:
    """Why the live version does not serve the registry's ``fields``/``captions`` yet, or None when it does.

    None as well when there is no live version (nothing lags: the first run builds it).
    """
    if live is None or live.schema == schema_hash(fields, captions):
        return None
    return (
        f"the live index {live.name} was built for other fields/captions than the registry declares now "
        "(filters on new fields and text on new caption columns find nothing there); "
        f"the next pipeline run builds a new version with them (visearch pipeline run --categories {live.category})"
    )
