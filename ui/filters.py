"""Filter controls of the UI, built from a category's filterable columns in the registry.

A keyword column becomes a multi-select dropdown whose choices (with counts) are the index's
facets, counted over the images the group's other controls leave (:func:`narrowed_choices`); a
numeric column a from/to pair, a text column a match box. Their values combine into the
library's filter object (Qdrant's filter JSON, :mod:`visearch.index.filters`): every control that
holds a value adds one ``must`` condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from visearch.categories import Category
from visearch.runtime import Runtime
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


def facet_choices(
    engine: SearchEngine,
    category: str,
    column: str,
    *,
    filter: Mapping[str, Any] | None = None,
    chosen: Sequence[Any] = (),
) -> list[tuple[str, Any]]:
    """Dropdown choices ``("value (count)", value)`` of a keyword column, most frequent first.

    Args:
        engine: the search engine over the live index.
        category: the category's name.
        column: one of its keyword columns.
        filter: count only the images this filter object leaves (None: the whole category).
        chosen: values already picked in the dropdown: kept, after the others, as ``"value (0)"`` when
            the filter leaves none of their images, so that a selection never silently disappears.

    Returns:
        The choices, at most ``MAX_CHOICES`` counted values plus the chosen ones the count left out.
    """
    counted = engine.facets(category, column, filter=filter, limit=MAX_CHOICES)
    found = {value for value, _ in counted}
    missing = [value for value in dict.fromkeys(chosen) if value not in found]
    if missing and len(counted) == MAX_CHOICES:  # the list was cut: a chosen value past it may still count
        only = keyword_condition(column, missing)
        narrowed = {"must": [dict(filter), only] if filter else [only]}
        counted += engine.facets(category, column, filter=narrowed, limit=len(missing))
    counts = dict(counted)
    return [(f"{value} ({count})", value) for value, count in counted] + [
        (f"{value} (0)", value) for value in missing if value not in counts
    ]


def narrowed_choices(
    engine: SearchEngine, category: Category, values: Mapping[str, Any]
) -> dict[str, list[tuple[str, Any]]]:
    """Every keyword column's choices counted over the images that the OTHER controls leave.

    Faceted search's usual rule: a column's own selection does not narrow its own list (so that
    several of its values can be picked), every other control's condition does.

    Args:
        engine: the search engine over the live index.
        category: the category whose filter controls hold ``values``.
        values: column -> the value of its control(s), as :meth:`FilterGroup.values` reads them.

    Returns:
        Keyword column -> its dropdown choices (:func:`facet_choices`), the chosen values kept.
    """
    kinds = category.filterable
    return {
        column: facet_choices(
            engine,
            category.name,
            column,
            filter=filter_json(kinds, {**values, column: []}),
            chosen=values.get(column) or [],
        )
        for column, kind in kinds.items()
        if kind == "keyword"
    }


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

    def recounted(self, choices: Mapping[str, list[tuple[str, Any]]]) -> dict[Any, Any]:
        """The keyword dropdowns offered ``choices`` (:func:`narrowed_choices`), their values kept."""
        return {dropdown: gr.update(choices=choices.get(column, [])) for column, dropdown in self.keywords.items()}


def build_filter_group(
    category: Category,
    prefix: str = "filter",
    *,
    choices: Mapping[str, list[tuple[str, Any]]] | None = None,
    key: Any = None,
) -> FilterGroup:
    """The controls of one category's filterable columns, in a column (call inside a Blocks or a render).

    ``prefix`` starts their element ids (``<prefix>s-<category>``, ``<prefix>-<category>-<column>``):
    the search section and the Browse tab each build their own group of one category. ``choices``:
    the keyword dropdowns' choices. ``key``: re-renders with the same key keep the controls' values.
    """
    choices = choices or {}
    with gr.Column(elem_id=f"{prefix}s-{category.name}") as section:
        gr.Markdown("**Filters** (only images whose columns match)")
        group = FilterGroup(category, section)
        with gr.Row():
            for column, kind in category.filterable.items():
                elem = f"{prefix}-{category.name}-{column}"
                own = None if key is None else (prefix, category.name, column, kind, key)
                if kind == "keyword":
                    group.keywords[column] = gr.Dropdown(
                        choices=choices.get(column, []),
                        value=[],
                        multiselect=True,
                        label=column,
                        elem_id=elem,
                        min_width=200,
                        key=own,
                    )
                elif kind == "text":
                    group.texts[column] = gr.Textbox(
                        label=f"{column} contains the words", elem_id=elem, max_lines=1, min_width=200, key=own
                    )
                else:
                    step = 1 if kind == "integer" else None
                    # ``value=None`` spelled out: a rendered Number left at its default reads 0 (a real bound).
                    group.ranges[column] = tuple(  # type: ignore[assignment]
                        gr.Number(
                            value=None,
                            label=f"{column} {end}",
                            step=step,  # type: ignore[arg-type]
                            elem_id=f"{elem}-{end}",
                            min_width=100,
                            key=None if own is None else (*own, end),
                        )
                        for end in ("from", "to")
                    )
    return group


def chosen_state(category: Category | None, previous: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """What the filter controls are rendered from: the chosen category's name and filterable columns.

    A new choice gets a new ``round`` (fresh, empty controls); ``previous`` given (the same category
    re-read from the registry) keeps its round, so an edit of other columns keeps the values set.
    """
    if category is None:
        return None
    kept = previous is not None and previous.get("name") == category.name
    round_ = previous["round"] if kept and previous else time.monotonic_ns()
    return {"name": category.name, "fields": sorted(category.filterable.items()), "round": round_}


def render_filter_group(
    runtime: Runtime, chosen: gr.State, wire: Callable[[FilterGroup | None], None], *, prefix: str = "filter"
) -> None:
    """The chosen category's filter controls, rendered again when ``chosen`` (:func:`chosen_state`) changes.

    The columns come from the live registry (which the server follows), so a category added or
    edited while the service runs gets its controls without a restart. ``wire`` attaches the
    events that read the group (None: no category chosen); Gradio replaces them on each render.
    """

    @gr.render(inputs=chosen, show_progress="hidden")
    def _group(state: dict[str, Any] | None) -> None:
        if not state:
            wire(None)
            return
        name, round_ = state["name"], state["round"]
        try:
            category = runtime.run(lambda engine: engine.registry.get(name))
        except Exception:  # noqa: BLE001 - removed from the registry meanwhile: no controls
            wire(None)
            return
        keywords = [column for column, kind in category.filterable.items() if kind == "keyword"]
        try:
            choices = runtime.run(lambda engine: {c: facet_choices(engine, category.name, c) for c in keywords})
        except Exception:  # noqa: BLE001 - no index yet: the category's section shows why
            choices = {}
        wire(build_filter_group(category, prefix, choices=choices, key=round_))
