"""Collection versions and point ids: the names the index gives what it stores.

Collection ``<category>__<version>`` with version ``<UTC time>-<model version>-<data hash>[-<schema>]``;
alias ``<category>`` names the live one. The model version in the name tells the search path
which model produced the vectors, so a rollback brings its model along; the schema hash names the
payload indexes and caption vectors the version was built with (the registry's ``fields``,
``captions`` and ``meaning``, and the sentence model of the semantic caption vectors), so a registry edit to them,
or installing the model, builds a new version instead of reusing the live one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from visearch.index.semantic import model_name

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


def schema_hash(
    fields: Mapping[str, str],
    captions: Sequence[str],
    semantic: str | None = None,
    meaning: Sequence[str] | None = None,
) -> str:
    """Short hash of an index schema: payload indexes, caption columns and the caption model.

    ``fields`` get payload indexes; the ``captions`` columns' text becomes the text vectors, and
    the sentence model named ``semantic`` (``""``: none; None: this installation's,
    :func:`visearch.index.semantic.model_name`) embeds the ``meaning`` columns (None: every
    caption column), so installing the model makes versions built without it lag. ``""`` when a
    category declares neither fields nor captions: its versions' names keep the three parts they
    had before the schema was named, so those stay reusable.
    """
    if not fields and not captions:
        return ""
    if semantic is None:
        semantic = model_name()
    embedded = meaning_columns(captions, meaning)
    schema: dict[str, object] = {"fields": dict(sorted(fields.items())), "captions": list(captions)}
    if embedded and semantic:
        schema["semantic"] = semantic  # absent otherwise: versions built before the model keep their hash
        if embedded != list(captions):
            schema["meaning"] = embedded  # absent when all captions: versions built before the key keep theirs
    # Caption order counts: the columns' text is joined in that order (the semantic vector reads it so).
    text = json.dumps(schema, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def meaning_columns(captions: Sequence[str], meaning: Sequence[str] | None = None) -> list[str]:
    """The caption columns whose meaning is embedded: ``meaning`` when given, else every caption column."""
    return list(captions if meaning is None else meaning)


def has_semantic(
    version: CollectionVersion,
    fields: Mapping[str, str],
    captions: Sequence[str],
    meaning: Sequence[str] | None = None,
) -> bool:
    """Whether ``version`` holds semantic caption vectors of this installation's model for these captions.

    Read from the name alone (no engine call): its schema is the one the registry and the model
    ask for. A version that lags the registry answers False, so queries and writes fall back to BM25.
    """
    semantic = model_name()
    return bool(semantic and meaning_columns(captions, meaning)) and version.schema == schema_hash(
        fields, captions, semantic, meaning
    )


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


def schema_lag(
    live: CollectionVersion | None,
    fields: Mapping[str, str],
    captions: Sequence[str],
    meaning: Sequence[str] | None = None,
) -> str | None:
    """Why the live version does not serve the registry's ``fields``/``captions``/``meaning`` yet, or None.

    None as well when there is no live version (nothing lags: the first run builds it).
    """
    if live is None or live.schema == schema_hash(fields, captions, meaning=meaning):
        return None
    return (
        f"the live index {live.name} was built for other fields/captions (or caption model) than the registry "
        "and this installation ask for now "
        "(filters on new fields and text on new caption columns find nothing there); "
        f"the next pipeline run builds a new version with them (visearch pipeline run --categories {live.category})"
    )
