"""Filter controls of the UI, built from a category's filterable columns in the registry.

A keyword column becomes a multi-select dropdown whose choices (with counts) are the index's
facets, a numeric column a from/to pair, a text column a match box. Their values combine into the
library's filter object (Qdrant's filter JSON, :mod:`visearch.index.filters`): every control that
holds a value adds one ``must`` condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from visearch.categories import Category
from visearch.search import SearchEngine

# Facet values shown in one dropdown: more are reachable through the text of a filter, not a list.
MAX_CHOICES = 200


def keyword_condition(column: str, values: Sequence[Any]) -> dict[str, Any] | None:
    """One value: an equality; several: any of them; none: no condition."""
    chosen = [value for value in values if value not in (None, "")]
    if not chosen:
        return None
    match = {"value": chosen[0]} if len(chosen) == 1 else {"any": chosen}
    return {"key": column, "match": match}


def range_condition(column: str, low: float | None, high: float | None, *, integer: bool) -> dict[str, Any] | None:
    """From/to, both inclusive, either may be empty; integers for an integer column."""
    bounds = {name: value for name, value in (("gte", low), ("lte", high)) if value is not None}
    if not bounds:
        return None
    return {"key": column, "range": {k: int(v) if integer else float(v) for k, v in bounds.items()}}


def text_condition(column: str, text: str | None) -> dict[str, Any] | None:
    """A full-text match on the words of ``text`` (all of them, case-insensitive)."""
    words = (text or "").strip()
    return {"key": column, "match": {"text": words}} if words else None


def filter_json(kinds: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The filter object for the controls' ``values`` (column -> value), None when no control holds one.

    Args:
        kinds: filterable column -> ``keyword`` | ``integer`` | ``float`` | ``text`` (``Category.filterable``).
        values: column -> a list of keyword values, a ``(low, high)`` pair or a text.

    Returns:
        ``{"must": [conditions]}`` in Qdrant's filter JSON, or None.
    """
    conditions = []
    for column, kind in kinds.items():
        value = values.get(column)
        if kind == "keyword":
            condition = keyword_condition(column, value or [])
        elif kind in ("integer", "float"):
            low, high = value or (None, None)
            condition = range_condition(column, low, high, integer=kind == "integer")
        else:
            condition = text_condition(column, value)
        if condition is not None:
            conditions.append(condition)
    return {"must": conditions} if conditions else None


def facet_choices(engine: SearchEngine, category: str, column: str) -> list[tuple[str, Any]]:
    """Dropdown choices ``("value (count)", value)`` of a keyword column, most frequent first."""
    return [(f"{value} ({count})", value) for value, count in engine.facets(category, column, limit=MAX_CHOICES)]


@dataclass
class FilterGroup:
    """The filter controls of one category: a column that is shown while the category is chosen."""

    category: Category
    section: gr.Column
    keywords: dict[str, gr.Dropdown] = field(default_factory=dict)
    ranges: dict[str, tuple[gr.Number, gr.Number]] = field(default_factory=dict)
    texts: dict[str, gr.Textbox] = field(default_factory=dict)

    def components(self) -> list[Any]:
        """Every input control of the group."""
        return [*self.keywords.values(), *(c for pair in self.ranges.values() for c in pair), *self.texts.values()]

    def values(self, data: Mapping[Any, Any]) -> dict[str, Any]:
        """Column -> the value of its control(s), read from a callback's input dict."""
        values: dict[str, Any] = {column: data.get(box) for column, box in {**self.keywords, **self.texts}.items()}
        values.update({column: (data.get(low), data.get(high)) for column, (low, high) in self.ranges.items()})
        return values

    def filter(self, data: Mapping[Any, Any]) -> dict[str, Any] | None:
        """The filter object the group's controls hold in a callback's input dict."""
        return filter_json(self.category.filterable, self.values(data))

    def cleared(self, choices: Mapping[str, list[tuple[str, Any]]] | None = None) -> dict[Any, Any]:
        """Every control emptied; keyword dropdowns get ``choices`` when given."""
        update: dict[Any, Any] = {box: gr.update(value=None) for box in self.components()}
        for column, dropdown in self.keywords.items():
            if choices is not None:
                update[dropdown] = gr.update(value=[], choices=choices.get(column, []))
            else:
                update[dropdown] = gr.update(value=[])
        return update


def build_filter_group(category: Category) -> FilterGroup:
    """The controls of one category's filterable columns, in a hidden column (call inside a Blocks)."""
    with gr.Column(visible=False, elem_id=f"filters-{category.name}") as section:
        gr.Markdown("**Filters** (only images whose columns match)")
        group = FilterGroup(category, section)
        with gr.Row():
            for column, kind in category.filterable.items():
                elem = f"filter-{category.name}-{column}"
                if kind == "keyword":
                    group.keywords[column] = gr.Dropdown(
                        choices=[], value=[], multiselect=True, label=column, elem_id=elem, min_width=200
                    )
                elif kind == "text":
                    group.texts[column] = gr.Textbox(
                        label=f"{column} contains the words", elem_id=elem, max_lines=1, min_width=200
                    )
                else:
                    step = 1 if kind == "integer" else None
                    group.ranges[column] = (
                        gr.Number(label=f"{column} from", step=step, elem_id=f"{elem}-from", min_width=100),
                        gr.Number(label=f"{column} to", step=step, elem_id=f"{elem}-to", min_width=100),
                    )
    return group
