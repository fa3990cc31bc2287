"""Collection versions and point ids: the names the index gives what it stores.

Collection ``<category>__<version>`` with version ``<UTC time>-<model version>-<data hash>``;
alias ``<category>`` names the live one. The model version in the name tells the search path
which model produced the vectors, so a rollback brings its model along.
"""

from __future__ import annotations

import uuid
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


@dataclass(frozen=True)
class CollectionVersion:
    """One version of a category's index, i.e. one collection."""

    category: str
    created: str
    model_version: str
    data_hash: str

    @classmethod
    def new(cls, category: str, model_version: str, data_hash: str) -> CollectionVersion:
        """A version created now."""
        # Microseconds: versions created within one second still sort in creation order.
        created = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return cls(category, created, model_version, data_hash)

    @property
    def name(self) -> str:
        """The collection name: ``<category>__<created>-<model version>-<data hash>``."""
        return f"{self.category}{SEPARATOR}{self.created}-{self.model_version}-{self.data_hash}"

    @classmethod
    def parse(cls, name: str) -> CollectionVersion | None:
        """The version a collection name stands for, or None if it is not a version's name."""
        category, sep, version = name.partition(SEPARATOR)
        parts = version.split("-")
        if not sep or len(parts) != 3:
            return None
        return cls(category, *parts)
