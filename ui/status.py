"""Which categories can answer: buttons of categories without a live index disabled and marked.

Read from the library (``SearchEngine.categories``) on each page load and every ``STATUS_SECONDS``,
so a pipeline that finishes, or a registry edit the server has followed, shows without a restart.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.sections import message_for
from visearch.runtime import Runtime

STATUS_SECONDS = 10
NOT_INDEXED = "not indexed"


def index_command(name: str) -> str:
    """The command that builds a category's index."""
    return f"visearch pipeline run -c {name}"


def marked_buttons(runtime: Runtime, buttons: dict[str, gr.Button], status: gr.Markdown) -> dict[Any, Any]:
    """Each category button enabled when its category has a live index, else disabled and marked; the commands.

    Returns:
        Updates of the buttons and of ``status`` (the categories to index, each with its command).
    """
    try:
        infos = {info.name: info for info in runtime.run(lambda engine: engine.categories())}
    except Exception as exc:  # noqa: BLE001 - shown in place; the buttons stay as they are
        return {status: gr.update(value=f"**⚠ {message_for(exc)}**")}
    update: dict[Any, Any] = {}
    waiting = []
    for name, button in buttons.items():
        info = infos.get(name)
        if info is None:  # removed from the registry since the page was built
            update[button] = gr.update(interactive=False, value=f"{name} (not in the registry)")
        elif info.indexed:
            update[button] = gr.update(interactive=True, value=info.title)
        else:
            update[button] = gr.update(interactive=False, value=f"{info.title} ({NOT_INDEXED})")
            waiting.append(f"**{info.title}**: `{index_command(name)}`")
    text = "Not indexed yet, so not searchable: " + "; ".join(waiting) if waiting else ""
    update[status] = gr.update(value=text)
    return update
