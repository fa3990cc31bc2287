"""Gradio Blocks UI: the seed's sections in order, each shown once the one before is filled.

Input options (category buttons, reset) → business usage → image provisioning (upload, pick an
example, random) → input image → search options with the results grid and its reset → credits.
A category with caption columns shows its search options at once (caption text alone searches).
Search options: k, minimum similarity, caption text, the category's filters (ui/filters.py: their
keyword dropdowns' counts narrow to what the other filters leave, on each change),
diverse and best-per-class toggles; on the results, more/less like this and paging (ui/query.py);
components and their updates in ui/sections.py, images in ui/images.py.
Callbacks call the library in this process through the server's ``Runtime`` (the same search
path as REST); errors are shown in place, in the section that caused them.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import gradio as gr
from PIL import Image

from ui.browse import build_browse_tab, first_page, wire_browse
from ui.filters import FilterGroup, chosen_state, narrowed_choices, render_filter_group
from ui.images import category_examples, for_display, query_from_upload, query_image
from ui.query import Example, Query
from ui.sections import (
    Parts,
    cleared,
    cleared_query,
    cleared_results,
    error_box,
    message_for,
    shown_answer,
    unhighlighted,
)
from ui.status import STATUS_SECONDS, live_status, render_category_buttons
from visearch.browse import random_image
from visearch.catalogue_api import changes_line
from visearch.categories import Category, load_registry
from visearch.errors import InvalidQueryError
from visearch.runtime import Runtime

__all__ = ["build_ui", "message_for", "mount_ui", "query_from_upload"]

TITLE = "Visual similarity search"
DEFAULT_K = 6
UI_MAX_K = 50
PROJECT_CREDITS = (
    "visearch: PyTorch Metric Learning embeddings, Qdrant vector search, MLflow tracking, a Kubeflow "
    "pipeline and a BentoML service. Category-based design after STX Next's visual-similarity-search demo."
)


def build_ui(runtime: Runtime) -> gr.Blocks:
    """The UI over ``runtime``; its categories and their filter controls follow the live registry.

    If the registry cannot be read at start, a page saying why.
    """
    try:
        load_registry(runtime.settings.visearch_categories)  # the callbacks read the server's live copy
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of failing the server
        with gr.Blocks(title=TITLE, analytics_enabled=False) as broken:
            gr.Markdown(f"# {TITLE}\n\n**⚠ {message_for(exc)}**\n\nFix it and restart the service.")
        return broken
    max_k = min(UI_MAX_K, runtime.settings.max_k)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nFind the images of a category that look most like yours.")
        gr.Markdown("### Input options")
        live = gr.State(None)  # [name, title, indexed] of each category (ui/status.py)
        chosen = gr.State(None)  # what the filter controls are rendered from (ui/filters.py)
        category_state = gr.State(None)  # the chosen category's name
        with gr.Row():
            # Rendered on load and whenever the live list changes; ``wire_category`` is defined below.
            render_category_buttons(live, lambda name, button: wire_category(name, button))
            reset_all = gr.Button("Reset all", variant="stop", elem_id="reset-all")
        index_status = gr.Markdown(elem_id="index-status")
        with gr.Column(visible=False) as usage_section:
            gr.Markdown("### Business usage")
            usage = gr.Markdown(elem_id="business-usage")
        with gr.Column(visible=False) as provision_section:
            gr.Markdown("### Image provisioning options")
            with gr.Tab("Upload"):
                upload = gr.File(
                    label="Upload an image (JPEG, PNG, WebP, GIF, BMP...)", type="filepath", elem_id="upload"
                )
            with gr.Tab("Pick an example"):
                examples = gr.Gallery(
                    label="Examples from the category", columns=6, height=280, allow_preview=False, elem_id="examples"
                )
            with gr.Tab("Random"):
                random_button = gr.Button("Pick a random image", elem_id="random")
            with gr.Tab("Browse"):
                browse_tab = build_browse_tab(runtime, chosen, category_state)
            provision_error = gr.Markdown(visible=False, elem_id="provision-error")
        with gr.Column(visible=False) as input_section:
            gr.Markdown("### Input image")
            input_image = gr.Image(type="pil", interactive=False, show_label=False, height=240, elem_id="input-image")
        with gr.Column(visible=False) as search_section:
            gr.Markdown("### Search options")
            # interactive=True spelled out: the events that read these are attached in a render
            # (wire_search), so Gradio cannot infer at build time that they are inputs.
            with gr.Row():
                min_similarity = gr.Slider(
                    0, 100, value=0, step=1, label="Minimum similarity (%)", elem_id="min-similarity", interactive=True
                )
                k = gr.Slider(
                    1,
                    max_k,
                    value=min(DEFAULT_K, max_k),
                    step=1,
                    label="Number of images",
                    elem_id="k",
                    interactive=True,
                )
            text = gr.Textbox(
                label="Caption text", max_lines=1, visible=False, elem_id="caption-text", interactive=True
            )
            no_captions = gr.Markdown(visible=False, elem_id="no-captions")
            # The chosen category's controls, rendered again when it changes; ``wire_search`` is defined below.
            render_filter_group(runtime, chosen, lambda group: wire_search(group))
            with gr.Row():
                diverse = gr.Checkbox(label="Diverse results (MMR)", elem_id="diverse", interactive=True)
                best_per_class = gr.Checkbox(label="Best image per class", elem_id="best-per-class", interactive=True)
            with gr.Row():
                search_button = gr.Button("Find similar images", variant="primary", elem_id="search")
                reset_results = gr.Button("Reset results", elem_id="reset-results")
            search_error = gr.Markdown(visible=False, elem_id="search-error")
            notice = gr.Markdown(visible=False, elem_id="notice")
            feedback = gr.Markdown(visible=False, elem_id="feedback")
            results = gr.Gallery(
                label="Results: select one to steer the search",
                columns=6,
                height=280,
                allow_preview=False,
                visible=False,
                elem_id="results",
            )
            selection = gr.Markdown(visible=False, elem_id="selected-result")
            with gr.Row(visible=False) as actions:
                more = gr.Button("More like this", elem_id="more-like-this", interactive=False)
                less = gr.Button("Less like this", elem_id="less-like-this", interactive=False)
                clear_feedback = gr.Button("Clear likes and dislikes", elem_id="clear-feedback")
                previous_page = gr.Button("◀ Previous page", elem_id="previous-page")
                page = gr.Markdown(elem_id="page")
                next_page = gr.Button("Next page ▶", elem_id="next-page")
            table = gr.Markdown(visible=False, elem_id="results-table")
        with gr.Column(visible=False) as credits_section:
            gr.Markdown("### Credits")
            credits = gr.Markdown(elem_id="credits")
        parts = Parts(
            category_state,
            gr.State(None),
            gr.State([]),
            gr.State(None),
            gr.State([]),
            gr.State(None),
            usage_section,
            usage,
            provision_section,
            upload,
            examples,
            provision_error,
            input_section,
            input_image,
            search_section,
            text,
            no_captions,
            diverse,
            best_per_class,
            search_error,
            notice,
            feedback,
            selection,
            results,
            actions,
            more,
            less,
            previous_page,
            page,
            next_page,
            table,
            credits_section,
            credits,
            chosen,
        )
        outputs = parts.all()

        def live_category(name: str | None) -> Category | None:
            """The category as the server's registry has it now (None: not there)."""
            registry = runtime.run(lambda engine: engine.registry)
            return registry.get(name) if name in registry.names() else None

        def text_search(category: str | None) -> bool:
            found = live_category(category)
            return found is not None and bool(found.captions)

        def choose(name: str) -> dict[Any, Any]:
            category = live_category(name)
            update = cleared(parts)
            if category is None:  # removed from the registry since the buttons were rendered
                return update
            update.update(
                {
                    parts.category: name,
                    parts.usage_section: gr.update(visible=True),
                    parts.usage: f"**{category.title}**\n\n{category.business_usage}",
                    parts.provision_section: gr.update(visible=True),
                    parts.credits: f"{category.credits}\n\n{PROJECT_CREDITS}",
                    parts.chosen: chosen_state(category),  # fresh filter controls, choices counted
                }
            )
            try:
                count, found = runtime.run(lambda engine: category_examples(engine, name))
            except Exception as exc:  # noqa: BLE001 - shown in place (e.g. "no index yet")
                update[parts.provision_error] = error_box(exc)
                return update
            # The living catalogue: what users changed since the model was trained ("" when nothing).
            line = changes_line(runtime.run(lambda engine: runtime.catalogues.changes_now(engine, name)) or {})
            changed = f" · {line}" if line else ""
            update[parts.usage] = f"**{category.title}** ({count} images{changed})\n\n{category.business_usage}"
            update[parts.examples] = gr.update(value=[(image, cls) for _, image, cls in found])
            update[parts.example_ids] = [pid for pid, _, _ in found]
            columns = ", ".join(category.captions)
            update[parts.text] = gr.update(
                value="",
                visible=bool(category.captions),
                placeholder=f"words in {columns}: alone a text search, with an input image a hybrid one",
            )
            update[parts.no_captions] = gr.update(
                value=f"*{category.title} has no caption columns: search with an image.*",
                visible=not category.captions,
            )
            update[parts.search_section] = gr.update(visible=bool(category.captions))
            return update

        def show_query(image: Image.Image) -> dict[Any, Any]:
            update = cleared_query(parts, text_search=True)
            update.update(
                {
                    parts.query: image,  # the decoded query: searching it decodes nothing again
                    parts.input_section: gr.update(visible=True),
                    parts.input_image: for_display(image),
                    parts.provision_error: error_box(None),
                }
            )
            return update

        def provision_failed(category: str | None, exc: BaseException) -> dict[Any, Any]:
            update = cleared_query(parts, text_search=text_search(category))
            update[parts.provision_error] = error_box(exc)
            return update

        def uploaded(category: str | None, path: str | None) -> dict[Any, Any]:
            if not path:
                return {}
            try:
                return show_query(query_from_upload(runtime, path, category))
            except Exception as exc:  # noqa: BLE001 - shown in place
                return {**provision_failed(category, exc), upload: None}  # empty the drop zone for the next try

        def stored(category: str | None, point_id: str) -> dict[Any, Any]:
            try:
                image = runtime.run(
                    lambda engine: query_image(engine, engine.image(category or "", point_id)[0], category)
                )
                return show_query(image)
            except Exception as exc:  # noqa: BLE001 - shown in place
                return provision_failed(category, exc)

        def picked(category: str | None, ids: list[str], event: gr.SelectData) -> dict[Any, Any]:
            if event.index is None or not 0 <= int(event.index) < len(ids):
                return {}
            return stored(category, ids[int(event.index)])

        def random_pick(category: str | None) -> dict[Any, Any]:
            try:  # drawn from the whole category (visearch.browse), not from a first page
                item = runtime.run(lambda engine: random_image(engine, category or ""))
            except Exception as exc:  # noqa: BLE001 - shown in place
                return provision_failed(category, exc)
            return stored(category, item.id)

        def run_search(group: FilterGroup | None, data: dict[Any, Any]) -> dict[Any, Any]:
            category = data[parts.category]
            if not category:
                return {**cleared_results(parts), parts.search_error: error_box(InvalidQueryError("choose a category"))}
            query = Query(
                category,
                image=data[parts.query],
                text=data[text] if text_search(category) else None,
                filter=group.filter(data) if group is not None and group.category.name == category else None,
                k=int(data[k]),
                min_similarity=float(data[min_similarity]),
                diverse=bool(data[diverse]),
                group_by_class=bool(data[best_per_class]),
            )
            return shown_answer(parts, runtime, query)

        def recount(group: FilterGroup, data: dict[Any, Any]) -> dict[Any, Any]:
            try:
                choices = runtime.run(lambda engine: narrowed_choices(engine, group.category, group.values(data)))
            except Exception as exc:  # noqa: BLE001 - shown in place
                return {parts.search_error: error_box(exc)}
            return {**group.recounted(choices), parts.search_error: error_box(None)}

        def turn_page(last: Query | None, step: int) -> dict[Any, Any]:
            if last is None:
                return {}
            return shown_answer(parts, runtime, dataclasses.replace(last, offset=max(0, last.offset + step * last.k)))

        def select_result(ids: list[list[str]], event: gr.SelectData) -> dict[Any, Any]:
            if event.index is None or not 0 <= int(event.index) < len(ids):
                return {parts.selected: None, more: gr.update(interactive=False), less: gr.update(interactive=False)}
            point_id, label = ids[int(event.index)]
            return {
                parts.selected: [point_id, label],
                parts.selection: gr.update(value=f"Selected: **{label}**", visible=True),
                more: gr.update(interactive=True),
                less: gr.update(interactive=True),
            }

        def steer(last: Query | None, chosen: list[str] | None, like: bool) -> dict[Any, Any]:
            if last is None or not chosen:
                return {}
            example = Example(chosen[0], chosen[1])
            likes = tuple(e for e in last.likes if e != example)
            dislikes = tuple(e for e in last.dislikes if e != example)
            steered = dataclasses.replace(
                last,
                offset=0,
                likes=(*likes, example) if like else likes,
                dislikes=dislikes if like else (*dislikes, example),
            )
            return shown_answer(parts, runtime, steered)

        def unsteer(last: Query | None) -> dict[Any, Any]:
            if last is None:
                return {}
            return shown_answer(parts, runtime, dataclasses.replace(last, offset=0, likes=(), dislikes=()))

        def wire_category(name: str, button: gr.Button) -> None:
            button.click(partial(choose, name), outputs=outputs).then(
                partial(first_page, browse_tab, runtime), inputs=parts.category, outputs=browse_tab.outputs()
            )

        search_inputs = {parts.category, parts.query, k, min_similarity, text, diverse, best_per_class}

        def wire_search(group: FilterGroup | None) -> None:
            """The events that read the filter controls, attached again on each render of them."""
            controls = set(group.components()) if group is not None else set()
            for trigger in (search_button.click, text.submit):
                answer = trigger(partial(run_search, group), inputs=search_inputs | controls, outputs=outputs)
                answer.then(unhighlighted, inputs=parts.result_ids, outputs=results)
            if group is not None and group.keywords:
                # A user's change recounts the group's keyword dropdowns (their choices only, values kept).
                # ``input`` fires on user changes alone, so updating the choices triggers nothing again;
                # always_last: the last change is always counted, even typed while a recount runs.
                gr.on(
                    [control.input for control in group.components()],
                    partial(recount, group),
                    inputs=controls,
                    outputs=[*group.keywords.values(), parts.search_error],
                    trigger_mode="always_last",
                    show_progress="hidden",
                )

        reset_all.click(lambda: cleared(parts), outputs=outputs).then(
            partial(first_page, browse_tab, runtime), inputs=parts.category, outputs=browse_tab.outputs()
        )
        wire_browse(browse_tab, runtime, parts.category)
        browse_tab.gallery.select(picked, inputs=[parts.category, browse_tab.ids], outputs=outputs)
        # Which categories there are and which can answer: on each page load and every few seconds
        # (a pipeline may finish, the registry file may change); the buttons render again on a change.
        status = partial(live_status, runtime, live, index_status, chosen)
        marking = [live, index_status, chosen]
        demo.load(status, inputs=[parts.category, chosen], outputs=marking, show_progress="hidden")
        gr.Timer(STATUS_SECONDS).tick(status, inputs=[parts.category, chosen], outputs=marking, show_progress="hidden")
        upload.upload(uploaded, inputs=[parts.category, upload], outputs=outputs)
        examples.select(picked, inputs=[parts.category, parts.example_ids], outputs=outputs)
        random_button.click(random_pick, inputs=parts.category, outputs=outputs)
        answers = [
            previous_page.click(partial(turn_page, step=-1), inputs=parts.last_query, outputs=outputs),
            next_page.click(partial(turn_page, step=1), inputs=parts.last_query, outputs=outputs),
            more.click(partial(steer, like=True), inputs=[parts.last_query, parts.selected], outputs=outputs),
            less.click(partial(steer, like=False), inputs=[parts.last_query, parts.selected], outputs=outputs),
            clear_feedback.click(unsteer, inputs=parts.last_query, outputs=outputs),
        ]
        for answer in answers:  # a new page highlights no image (see unhighlighted)
            answer.then(unhighlighted, inputs=parts.result_ids, outputs=results)
        results.select(select_result, inputs=parts.result_ids, outputs=outputs)
        reset_results.click(lambda: cleared_results(parts), outputs=outputs)
    return demo


def mount_ui(app: Any, runtime: Runtime, *, path: str = "/ui") -> None:
    """Mount the UI on a FastAPI app with Gradio's public API (no SSR: no Node server here)."""
    gr.mount_gradio_app(
        app,
        build_ui(runtime),
        path=path,
        ssr_mode=False,
        show_error=False,
        max_file_size=runtime.settings.max_upload_bytes,
        footer_links=["api"],
    )
