"""Browse a category: its live index a page at a time, filtered, in a stable order.

The REST ``GET /categories/{category}/images``, ``visearch browse`` and the UI's Browse tab and
"Random" pick all call :func:`browse` (or :func:`random_image`). The order is the engine's point id
order (uuid5 of ``<category>/<file>``): arbitrary but stable, so the pages of an unchanged live
version cover the category exactly once. The filter is the one ``/search`` takes (Qdrant's filter
JSON over the category's filterable columns, :mod:`visearch.index.filters`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visearch.errors import InvalidQueryError, NotFoundError
from visearch.index.filters import parse_filter
from visearch.search_options import captions_of, check_int

if TYPE_CHECKING:
    from visearch.index import Record
    from visearch.search import SearchEngine

MAX_PAGE = 100
# Paging by offset costs the engine a walk over the skipped ids: bounded, yet past any category's size.
MAX_OFFSET = 10_000_000
DEFAULT_PAGE = 20


@dataclass
class BrowseItem:
    """One stored image: point id, class, label, file, caption columns and its object-store key."""

    id: str
    cls: str
    label: int | None
    file: str
    captions: dict[str, Any] = field(default_factory=dict)
    image_key: str = ""

    @classmethod
    def of(cls, record: Record) -> BrowseItem:
        """The item of an index record; payload fields other than the core ones are its captions."""
        payload = record.payload
        label = payload.get("label")
        return cls(
            record.id,
            str(payload.get("class", "")),
            int(label) if isinstance(label, int | float) and not isinstance(label, bool) else None,
            str(payload.get("file", "")),
            captions_of(payload),
            str(payload.get("image_key", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the store key, with ``class`` for ``cls``."""
        return {"id": self.id, "class": self.cls, "label": self.label, "file": self.file, "captions": self.captions}


@dataclass
class BrowsePage:
    """One page of a category's images.

    Attributes:
        items: the images of the page, in the stable browse order.
        offset: how many matching images come before the page.
        limit: the page size asked for.
        next_offset: the ``offset`` of the next page; None when this page is the last.
        collection: the live index version read.
        model_version: the model of that version.
    """

    items: list[BrowseItem]
    offset: int
    limit: int
    next_offset: int | None
    collection: str
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: items as :meth:`BrowseItem.to_dict`, the rest as is."""
        return {
            "items": [item.to_dict() for item in self.items],
            "offset": self.offset,
            "limit": self.limit,
            "next_offset": self.next_offset,
            "collection": self.collection,
            "model_version": self.model_version,
        }


def filter_from_text(text: str | None, name: str = "filter") -> dict[str, Any] | None:
    """A filter given as JSON text (a query string, a command-line option) as an object; None when empty.

    Raises:
        InvalidQueryError: naming ``name``, when the text is not JSON or not a JSON object.
    """
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidQueryError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidQueryError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def browse(
    engine: SearchEngine,
    category: str,
    *,
    offset: int = 0,
    limit: int = DEFAULT_PAGE,
    filter: Mapping[str, Any] | None = None,
) -> BrowsePage:
    """A page of the category's live index, optionally filtered, in a stable order.

    Raises:
        UnknownCategoryError: ``category`` is not in the registry.
        NotFoundError: the category has no live index yet.
        InvalidQueryError: ``offset`` or ``limit`` out of range, or a bad filter.
    """
    kinds = engine.registry.get(category).filterable
    check_int("offset", offset, 0, MAX_OFFSET)
    check_int("limit", limit, 1, MAX_PAGE)
    flt = parse_filter(filter, kinds)
    live = engine.live_version(category)
    # One more than the page: whether it exists says if there is a next page, with no count.
    records = engine.index.page(live.name, offset, limit + 1, flt)
    more = len(records) > limit
    return BrowsePage(
        [BrowseItem.of(record) for record in records[:limit]],
        offset,
        limit,
        offset + limit if more else None,
        live.name,
        live.model_version,
    )


def random_image(engine: SearchEngine, category: str, rng: random.Random | None = None) -> BrowseItem:
    """An image drawn uniformly from the whole live index of the category.

    Raises:
        NotFoundError: the category has no live index, or it holds no image.
    """
    live = engine.live_version(category)
    count = engine.index.count(live.name)
    if count == 0:
        raise NotFoundError(f"category {category!r} holds no image yet")
    pick = (rng or random.Random()).randrange(count)  # noqa: S311 - not security relevant
    records = engine.index.page(live.name, pick, 1)
    if not records:  # a catalogue removal between count and page: the last one is as good
        records = engine.index.page(live.name, max(0, count - 2), 1)
    if not records:
        raise NotFoundError(f"category {category!r} holds no image yet")
    return BrowseItem.of(records[0])
