"""The Browse tab: a category's images a page at a time, narrowed by the category's filter controls.

Pages come from ``visearch.browse.browse`` (the order of ``GET /categories/{category}/images``);
the filter controls are the search section's (``ui.filters``), rendered once more for this tab with
their own element ids (from the live registry, as the search section's). "Show" applies the controls and goes back to the first page; previous/next
keep the filter that was applied. Selecting an image makes it the input image (wired in ui/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from ui.filters import FilterGroup, render_filter_group
from ui.images import THUMBNAIL_SIDE, for_display
from ui.sections import error_box
from visearch.browse import BrowseItem, browse
from visearch.runtime import Runtime
from visearch.search import SearchEngine

PAGE = 12


@dataclass
class BrowseTab:
    """The components of the Browse tab (its filter controls are rendered: :func:`wire_browse`)."""

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


def build_browse_tab(runtime: Runtime, chosen: gr.State, category: gr.State) -> BrowseTab:
    """The tab's components (call inside a ``gr.Tab``): the chosen category's filter controls, Show, the pages.

    ``chosen``: what the filter controls are rendered from (:func:`ui.filters.chosen_state`);
    ``category``: the chosen category's name. Paging is wired by :func:`wire_browse`.
    """
    tab = BrowseTab(
        gr.Button("Show", elem_id="browse-show", render=False),
        gr.Gallery(
            label="Images of the category: select one to search with it",
            columns=6,
            height=280,
            allow_preview=False,
            elem_id="browse-gallery",
            render=False,
        ),
        gr.Button("◀ Previous", elem_id="browse-previous", interactive=False, render=False),
        gr.Markdown(elem_id="browse-page", render=False),
        gr.Button("Next ▶", elem_id="browse-next", interactive=False, render=False),
        gr.Markdown(visible=False, elem_id="browse-error", render=False),
        gr.State(0),
        gr.State(None),
        gr.State([]),
    )
    # Above the Show button: the controls are rendered (again) whenever the chosen category changes.
    render_filter_group(runtime, chosen, partial(wire_show, tab, runtime, category), prefix="browse-filter")
    tab.show.render()
    tab.gallery.render()
    with gr.Row():
        tab.previous.render()
        tab.page.render()
        tab.next.render()
    tab.error.render()
    return tab


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


def wire_show(tab: BrowseTab, runtime: Runtime, category_state: gr.State, group: FilterGroup | None) -> None:
    """Show: the first page of the chosen category, narrowed by ``group``'s controls (called on each render)."""

    def apply(data: dict[Any, Any]) -> dict[Any, Any]:
        category = data[category_state]
        flt = group.filter(data) if group is not None and group.category.name == category else None
        return shown_page(tab, runtime, category, 0, flt)

    controls = set(group.components()) if group is not None else set()
    tab.show.click(apply, inputs={category_state} | controls, outputs=tab.outputs())


def wire_browse(tab: BrowseTab, runtime: Runtime, category_state: gr.State) -> None:
    """The tab's paging: previous/next keep the filter of the page shown."""

    def turn(category: str | None, offset: int, flt: Any, step: int) -> dict[Any, Any]:
        return shown_page(tab, runtime, category, offset + step * PAGE, flt)

    tab.previous.click(
        lambda c, o, f: turn(c, o, f, -1), inputs=[category_state, tab.offset, tab.applied], outputs=tab.outputs()
    )
    tab.next.click(
        lambda c, o, f: turn(c, o, f, 1), inputs=[category_state, tab.offset, tab.applied], outputs=tab.outputs()
    )


def first_page(tab: BrowseTab, runtime: Runtime, category: str | None) -> dict[Any, Any]:
    """A newly chosen category's first page, unfiltered (its filter controls are rendered empty)."""
    return shown_page(tab, runtime, category, 0, None)
