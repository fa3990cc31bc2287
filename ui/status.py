"""The category row: a button per category of the live registry, those without a live index disabled and marked.

Read from the library (``SearchEngine.categories``, what ``GET /categories`` answers) on each page
load and every ``STATUS_SECONDS``, so a pipeline that finishes, or a registry edit the server has
followed (a category added or removed), shows without a restart: the buttons are rendered again
(``gr.render``) only when that list changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ui.filters import chosen_state
from ui.sections import message_for
from visearch.runtime import Runtime

STATUS_SECONDS = 10
NOT_INDEXED = "not indexed"


def index_command(name: str) -> str:
    """The command that builds a category's index."""
    return f"visearch pipeline run -c {name}"


def live_status(
    runtime: Runtime, live: gr.State, status: gr.Markdown, chosen: gr.State, category: str | None, state: Any
) -> dict[Any, Any]:
    """The live categories as ``[name, title, indexed]`` rows, the commands that index the others.

    Also the chosen category's filterable columns (:func:`ui.filters.chosen_state`), re-read from
    the registry so that an edit reaches its filter controls.

    Returns:
        Updates of ``live``, ``status`` and ``chosen``; on an error only ``status`` (the buttons stay).
    """
    try:
        infos, registry = runtime.run(lambda engine: (engine.categories(), engine.registry))
    except Exception as exc:  # noqa: BLE001 - shown in place; the buttons stay as they are
        return {status: gr.update(value=f"**⚠ {message_for(exc)}**")}
    waiting = [f"**{info.title}**: `{index_command(info.name)}`" for info in infos if not info.indexed]
    text = "Not indexed yet, so not searchable: " + "; ".join(waiting) if waiting else ""
    current = registry.get(category) if category in registry.names() else None
    return {
        live: [[info.name, info.title, info.indexed] for info in infos],
        status: gr.update(value=text),
        chosen: chosen_state(current, state),
    }


def render_category_buttons(live: gr.State, wire: Callable[[str, gr.Button], None]) -> None:
    """A button per row of ``live`` (:func:`live_status`), rendered again when it changes; ``wire`` adds its click."""

    @gr.render(inputs=live, triggers=[live.change], show_progress="hidden")
    def _buttons(rows: list[list[Any]] | None) -> None:
        for name, title, indexed in rows or []:
            label = title if indexed else f"{title} ({NOT_INDEXED})"
            wire(name, gr.Button(label, interactive=bool(indexed), elem_id=f"category-{name}"))
