"""The Browse tab: a category's images a page at a time, narrowed by the category's filter controls.

Pages come from ``visearch.browse.browse`` (the order of ``GET /categories/{category}/images``);
the filter controls are the search section's (``ui.filters``), built once more for this tab with
their own element ids. "Show" applies the controls and goes back to the first page; previous/next
keep the filter that was applied. Selecting an image makes it the input image (wired in ui/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.filters import FilterGroup, build_filter_group, facet_choices
from ui.images import THUMBNAIL_SIDE, for_display
from ui.sections import error_box
from visearch.browse import BrowseItem, browse
from visearch.categories import Registry
from visearch.runtime import Runtime
from visearch.search import SearchEngine

PAGE = 12


@dataclass
class BrowseTab:
    """The components of the Browse tab (``filters``: one group of controls per category)."""

    filters: dict[str, FilterGroup]
    show: gr.Button
    gallery: gr.Gallery
    previous: gr.Button
    page: gr.Markdown
    next: gr.Button
    error: gr.Markdown
    offset: gr.State
    applied: gr.State  # the filter object of the page shown (paging keeps it)
    ids: gr.State

    def outputs(self) -> list[Any]:
        """Every component a page callback updates."""
        return [self.gallery, self.previous, self.page, self.next, self.error, self.offset, self.applied, self.ids]

    def filter_outputs(self) -> list[Any]:
        """The filter groups' sections and controls."""
        return [part for group in self.filters.values() for part in (group.section, *group.components())]

    def filter_inputs(self) -> set[Any]:
        """The controls of every filter group."""
        return {control for group in self.filters.values() for control in group.components()}


def build_browse_tab(registry: Registry) -> BrowseTab:
    """The tab's components (call inside a ``gr.Tab``); events are wired by :func:`wire_browse`."""
    filters = {category.name: build_filter_group(category, prefix="browse-filter") for category in registry.categories}
    show = gr.Button("Show", elem_id="browse-show")
    gallery = gr.Gallery(
        label="Images of the category: select one to search with it",
        columns=6,
        height=280,
        allow_preview=False,
        elem_id="browse-gallery",
    )
    with gr.Row():
        previous = gr.Button("◀ Previous", elem_id="browse-previous", interactive=False)
        page = gr.Markdown(elem_id="browse-page")
        following = gr.Button("Next ▶", elem_id="browse-next", interactive=False)
    error = gr.Markdown(visible=False, elem_id="browse-error")
    return BrowseTab(
        filters, show, gallery, previous, page, following, error, gr.State(0), gr.State(None), gr.State([])
    )


def thumbnail(engine: SearchEngine, item: BrowseItem) -> Any:
    """The stored image of a browsed item, ready for the gallery."""
    return for_display(engine.decode(engine.store.get_bytes(item.image_key), min_side=THUMBNAIL_SIDE))


def shown_page(tab: BrowseTab, runtime: Runtime, category: str | None, offset: int, flt: Any) -> dict[Any, Any]:
    """One page of ``category`` in the tab, or the reason it cannot be shown, in place."""
    if not category:
        return {tab.gallery: gr.update(value=[]), tab.ids: [], tab.page: "", tab.error: error_box(None)}
    try:
        page = runtime.run(lambda engine: browse(engine, category, offset=max(0, offset), limit=PAGE, filter=flt))
        gallery = runtime.run(lambda engine: [(thumbnail(engine, item), item.cls) for item in page.items])
    except Exception as exc:  # noqa: BLE001 - shown in place
        return {tab.error: error_box(exc)}
    first = page.offset + 1
    text = f"Images {first}–{page.offset + len(page.items)}" if page.items else "No image matches the filters"
    return {
        tab.gallery: gr.update(value=gallery),
        tab.ids: [item.id for item in page.items],
        tab.offset: page.offset,
        tab.applied: flt,
        tab.page: text,
        tab.previous: gr.update(interactive=page.offset > 0),
        tab.next: gr.update(interactive=page.next_offset is not None),
        tab.error: error_box(None),
    }


def wire_browse(tab: BrowseTab, runtime: Runtime, category_state: gr.State) -> None:
    """The tab's own events: Show (filters applied, first page) and previous/next."""

    def apply(data: dict[Any, Any]) -> dict[Any, Any]:
        category = data[category_state]
        group = tab.filters.get(category or "")
        return shown_page(tab, runtime, category, 0, group.filter(data) if group else None)

    def turn(category: str | None, offset: int, flt: Any, step: int) -> dict[Any, Any]:
        return shown_page(tab, runtime, category, offset + step * PAGE, flt)

    tab.show.click(apply, inputs={category_state} | tab.filter_inputs(), outputs=tab.outputs())
    tab.previous.click(
        lambda c, o, f: turn(c, o, f, -1), inputs=[category_state, tab.offset, tab.applied], outputs=tab.outputs()
    )
    tab.next.click(
        lambda c, o, f: turn(c, o, f, 1), inputs=[category_state, tab.offset, tab.applied], outputs=tab.outputs()
    )


def first_page(tab: BrowseTab, runtime: Runtime, category: str | None) -> dict[Any, Any]:
    """A newly chosen category: its filter controls only, emptied (counted choices), and its first page."""
    update: dict[Any, Any] = {}
    for name, group in tab.filters.items():
        update.update({group.section: gr.update(visible=name == category), **group.cleared()})
    group = tab.filters.get(category or "")
    if group is not None and group.keywords:
        try:
            choices = runtime.run(lambda e: {c: facet_choices(e, group.category.name, c) for c in group.keywords})
            update.update(group.cleared(choices))
        except Exception:  # noqa: BLE001, S110 - the page below shows the reason (e.g. no index yet)
            pass
    update.update(shown_page(tab, runtime, category, 0, None))
    return update
