"""The UI's components as one record, and the updates that clear or fill them (errors shown in place)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.images import stored_image
from ui.query import Example, Query, caption, feedback_text, notice_text, page_text, results_table
from visearch.runtime import Runtime, error_payload


def message_for(exc: BaseException) -> str:
    """The same message REST would return, without a traceback."""
    status, body = error_payload(exc)
    return f"{body['error']} (HTTP {status})" if status >= 500 else str(body["error"])


def error_box(exc: BaseException | None) -> dict[str, Any]:
    """Update of an error box: hidden when ``exc`` is None, else showing its message."""
    if exc is None:
        return gr.update(value="", visible=False)
    return gr.update(value=f"**⚠ {message_for(exc)}**", visible=True)


@dataclass
class Parts:
    """The components the callbacks update (``chosen``: what the filter controls are rendered from)."""

    category: gr.State
    query: gr.State
    example_ids: gr.State
    last_query: gr.State
    result_ids: gr.State
    selected: gr.State
    usage_section: gr.Column
    usage: gr.Markdown
    provision_section: gr.Column
    upload: gr.File
    examples: gr.Gallery
    provision_error: gr.Markdown
    input_section: gr.Column
    input_image: gr.Image
    search_section: gr.Column
    text: gr.Textbox
    no_captions: gr.Markdown
    diverse: gr.Checkbox
    best_per_class: gr.Checkbox
    search_error: gr.Markdown
    notice: gr.Markdown
    feedback: gr.Markdown
    selection: gr.Markdown
    results: gr.Gallery
    actions: gr.Row
    more: gr.Button
    less: gr.Button
    previous_page: gr.Button
    page: gr.Markdown
    next_page: gr.Button
    table: gr.Markdown
    credits_section: gr.Column
    credits: gr.Markdown
    chosen: gr.State

    def all(self) -> list[Any]:
        """Every component (the outputs of the callbacks)."""
        return list(vars(self).values())


def cleared(parts: Parts) -> dict[Any, Any]:
    """Everything after the category section hidden and empty (the "reset all" state)."""
    update = {
        parts.category: None,
        parts.example_ids: [],
        parts.usage_section: gr.update(visible=False),
        parts.usage: "",
        parts.provision_section: gr.update(visible=False),
        parts.upload: None,
        parts.examples: gr.update(value=[]),
        parts.provision_error: error_box(None),
        parts.text: gr.update(value="", visible=False),
        parts.no_captions: gr.update(visible=False),
        parts.diverse: False,
        parts.best_per_class: False,
        parts.chosen: None,  # no filter controls
        **cleared_query(parts, text_search=False),
    }
    return update


def cleared_query(parts: Parts, *, text_search: bool) -> dict[Any, Any]:
    """The input image and the results gone; the search section stays for a text search only."""
    return {
        parts.query: None,
        parts.input_section: gr.update(visible=False),
        parts.input_image: None,
        parts.search_section: gr.update(visible=text_search),
        **cleared_results(parts),
    }


def cleared_results(parts: Parts) -> dict[Any, Any]:
    """The results, the page, likes and dislikes, the notice and the credits gone, the error cleared."""
    return {
        parts.last_query: None,
        parts.result_ids: [],
        parts.selected: None,
        parts.more: gr.update(interactive=False),
        parts.less: gr.update(interactive=False),
        parts.results: gr.update(value=[], visible=False),
        parts.table: gr.update(value="", visible=False),
        parts.notice: gr.update(value="", visible=False),
        parts.feedback: gr.update(value="", visible=False),
        parts.selection: gr.update(value="", visible=False),
        parts.actions: gr.update(visible=False),
        parts.credits_section: gr.update(visible=False),
        parts.search_error: error_box(None),
    }


def unhighlighted(result_ids: list[Any]) -> dict[str, Any]:
    """The gallery with no image highlighted, once :func:`shown_answer` has filled it.

    Gradio's gallery keeps the highlighted index across a new value (clamped to it) and ignores
    ``selected_index=None``, so an old highlight would sit on a new page while the steering buttons
    are off. An index past the page, sent after the value, highlights nothing; a click still selects.
    """
    return gr.update(selected_index=len(result_ids))


def shown_answer(parts: Parts, runtime: Runtime, query: Query) -> dict[Any, Any]:
    """Run ``query`` and show its page (gallery, table, notice, likes, paging), or its error in place."""
    update = cleared_results(parts)
    try:
        answer = runtime.run(query.run)
        gallery = runtime.run(
            lambda engine: [(stored_image(engine, r), caption(r, answer.score_kind)) for r in answer.results]
        )
    except Exception as exc:  # noqa: BLE001 - shown in place
        update[parts.search_error] = error_box(exc)
        if query.likes or query.dislikes or query.offset:  # keep steering from the last page shown
            update.pop(parts.last_query)
        return update
    notice = notice_text(answer)
    update.update(
        {
            parts.last_query: query,
            parts.result_ids: [[r.id, Example.of(r).label] for r in answer.results],
            parts.results: gr.update(value=gallery, visible=True),
            parts.table: gr.update(value=results_table(answer, query.offset), visible=True),
            parts.notice: gr.update(value=notice or "", visible=notice is not None),
            parts.feedback: gr.update(value=feedback_text(query.likes, query.dislikes), visible=True),
            parts.actions: gr.update(visible=True),
            parts.previous_page: gr.update(interactive=query.offset > 0),
            parts.page: page_text(query.offset, len(answer.results)),
            parts.next_page: gr.update(interactive=answer.next_offset is not None),
            parts.credits_section: gr.update(visible=True),
        }
    )
    return update
