"""Gradio Blocks UI: the seed's sections in order, each shown once the one before is filled.

Input options (category buttons, reset) → business usage → image provisioning (upload, pick an
example, random) → input image → search options with the results grid and its reset → credits.
Callbacks call the library in this process through the server's ``Runtime`` (the same search
path as REST); errors are shown in place, in the section that caused them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from visearch.categories import load_registry
from visearch.errors import InvalidImageError, InvalidQueryError
from visearch.runtime import Runtime, error_payload, read_upload
from visearch.search import SearchEngine, SearchResult

TITLE = "Visual similarity search"
EXAMPLES_SHOWN = 12
DEFAULT_K = 6
UI_MAX_K = 50
DISPLAY_MIN_SIDE = 160
# Images are decoded once, at the scale shown (the input image box is 240 px high; gallery
# thumbnails ~160) or the model needs, whichever is larger: a phone photo is never decoded at
# full size (src/visearch/data/images.py: JPEG draft).
QUERY_SIDE = 240
THUMBNAIL_SIDE = DISPLAY_MIN_SIDE
PROJECT_CREDITS = (
    "visearch: PyTorch Metric Learning embeddings, Qdrant vector search, MLflow tracking, a Kubeflow "
    "pipeline and a BentoML service. Category-based design after STX Next's visual-similarity-search demo."
)


def message_for(exc: BaseException) -> str:
    """The same message REST would return, without a traceback."""
    status, body = error_payload(exc)
    return f"{body['error']} (HTTP {status})" if status >= 500 else str(body["error"])


def error_box(exc: BaseException | None) -> dict[str, Any]:
    """Update of an error box: hidden when ``exc`` is None, else showing its message."""
    if exc is None:
        return gr.update(value="", visible=False)
    return gr.update(value=f"**⚠ {message_for(exc)}**", visible=True)


# --- logic (plain functions over the runtime; tested without a browser) -------------------------
def query_from_upload(runtime: Runtime, path: str | None, category: str | None = None) -> Image.Image:
    """An uploaded file decoded once (for display and search), or InvalidImageError with the reason."""
    if not path:
        raise InvalidImageError("no file received")
    data = read_upload(Path(path), runtime.settings.max_upload_bytes)
    return runtime.run(lambda engine: query_image(engine, data, category))


def query_image(engine: SearchEngine, data: bytes, category: str | None) -> Image.Image:
    """The query decoded once, at the scale both the input box and the category's model need."""
    return engine.decode(data, category, min_side=QUERY_SIDE)


def for_display(image: Image.Image, min_side: int = DISPLAY_MIN_SIDE) -> Image.Image:
    """Enlarge tiny images (28 px Fashion-MNIST) by a whole factor so they stay crisp on screen."""
    factor = min_side // max(1, max(image.size))
    return (
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST) if factor > 1 else image
    )


def stored_image(engine: SearchEngine, result: SearchResult) -> Image.Image:
    """The stored image of a result, ready for display."""
    return for_display(engine.decode(engine.store.get_bytes(result.image_key), min_side=THUMBNAIL_SIDE))


def category_examples(engine: SearchEngine, name: str) -> tuple[int, list[tuple[str, Image.Image, str]]]:
    """Indexed image count and the example thumbnails (id, image, class) of a category."""
    examples = engine.examples(name, EXAMPLES_SHOWN)  # raises when the category has no index
    count = next((info.image_count for info in engine.categories() if info.name == name), len(examples))
    return count, [(r.id, stored_image(engine, r), r.cls) for r in examples]


def caption(result: SearchResult) -> str:
    """Gallery caption of a result: similarity, class, file and the non-empty captions."""
    extra = ", ".join(f"{key}: {value}" for key, value in result.captions.items() if value not in (None, ""))
    return " · ".join(part for part in (f"{result.similarity:.1f} %", result.cls, result.file, extra) if part)


def search(runtime: Runtime, category: str, query: Image.Image, k: float, min_similarity: float) -> list[SearchResult]:
    """Search the category for images like the decoded ``query`` (the sliders' values as int and float)."""
    return runtime.run(
        lambda engine: engine.search_image(category, query, k=int(k), min_similarity=float(min_similarity))
    )


def results_table(results: list[SearchResult]) -> str:
    """The results as a Markdown table, or a hint when there are none."""
    if not results:
        return "No image reaches the minimum similarity; lower it or ask for more images."
    rows = ["| # | similarity | class | file | captions |", "|---|---|---|---|---|"]
    for rank, result in enumerate(results, 1):
        extra = ", ".join(f"{k}: {v}" for k, v in result.captions.items() if v not in (None, ""))
        rows.append(f"| {rank} | {result.similarity:.1f} % | {result.cls} | {result.file} | {extra} |")
    return "\n".join(rows)


# --- the Blocks ------------------------------------------------------------------------------
@dataclass
class Parts:
    """The components the callbacks update."""

    category: gr.State
    query: gr.State
    example_ids: gr.State
    usage_section: gr.Column
    usage: gr.Markdown
    provision_section: gr.Column
    examples: gr.Gallery
    provision_error: gr.Markdown
    input_section: gr.Column
    input_image: gr.Image
    search_section: gr.Column
    search_error: gr.Markdown
    results: gr.Gallery
    table: gr.Markdown
    credits_section: gr.Column
    credits: gr.Markdown

    def all(self) -> list[Any]:
        """Every component, in field order (the outputs of the callbacks)."""
        return list(vars(self).values())


def cleared(parts: Parts) -> dict[Any, Any]:
    """Everything after the category section hidden and empty (the "reset all" state)."""
    return {
        parts.category: None,
        parts.query: None,
        parts.example_ids: [],
        parts.usage_section: gr.update(visible=False),
        parts.usage: "",
        parts.provision_section: gr.update(visible=False),
        parts.examples: gr.update(value=[]),
        parts.provision_error: error_box(None),
        **cleared_query(parts),
    }


def cleared_query(parts: Parts) -> dict[Any, Any]:
    """The input image and everything after it hidden and empty."""
    return {
        parts.query: None,
        parts.input_section: gr.update(visible=False),
        parts.input_image: None,
        parts.search_section: gr.update(visible=False),
        parts.search_error: error_box(None),
        **cleared_results(parts),
    }


def cleared_results(parts: Parts) -> dict[Any, Any]:
    """The results, their table and the credits hidden, the search error cleared."""
    return {
        parts.results: gr.update(value=[], visible=False),
        parts.table: gr.update(value="", visible=False),
        parts.credits_section: gr.update(visible=False),
        parts.search_error: error_box(None),
    }


def build_ui(runtime: Runtime) -> gr.Blocks:
    """The UI over ``runtime``, built from the registry alone (the index may come up later).

    If the registry cannot be read, a page saying why.
    """
    try:
        registry = load_registry(runtime.settings.visearch_categories)
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of failing the server
        with gr.Blocks(title=TITLE, analytics_enabled=False) as broken:
            gr.Markdown(f"# {TITLE}\n\n**⚠ {message_for(exc)}**\n\nFix it and restart the service.")
        return broken
    max_k = min(UI_MAX_K, runtime.settings.max_k)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nFind the images of a category that look most like yours.")
        gr.Markdown("### Input options")
        with gr.Row():
            buttons = {
                category.name: gr.Button(category.title, elem_id=f"category-{category.name}")
                for category in registry.categories
            }
            reset_all = gr.Button("Reset all", variant="stop", elem_id="reset-all")
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
            provision_error = gr.Markdown(visible=False, elem_id="provision-error")
        with gr.Column(visible=False) as input_section:
            gr.Markdown("### Input image")
            input_image = gr.Image(type="pil", interactive=False, show_label=False, height=240, elem_id="input-image")
        with gr.Column(visible=False) as search_section:
            gr.Markdown("### Search options")
            with gr.Row():
                min_similarity = gr.Slider(
                    0, 100, value=0, step=1, label="Minimum similarity (%)", elem_id="min-similarity"
                )
                k = gr.Slider(1, max_k, value=min(DEFAULT_K, max_k), step=1, label="Number of images", elem_id="k")
            with gr.Row():
                search_button = gr.Button("Find similar images", variant="primary", elem_id="search")
                reset_results = gr.Button("Reset results", elem_id="reset-results")
            search_error = gr.Markdown(visible=False, elem_id="search-error")
            results = gr.Gallery(label="Most similar images", columns=6, height=280, visible=False, elem_id="results")
            table = gr.Markdown(visible=False, elem_id="results-table")
        with gr.Column(visible=False) as credits_section:
            gr.Markdown("### Credits")
            credits = gr.Markdown(elem_id="credits")
        parts = Parts(
            gr.State(None),
            gr.State(None),
            gr.State([]),
            usage_section,
            usage,
            provision_section,
            examples,
            provision_error,
            input_section,
            input_image,
            search_section,
            search_error,
            results,
            table,
            credits_section,
            credits,
        )
        outputs = parts.all()

        def choose(name: str) -> dict[Any, Any]:
            category = registry.get(name)
            update = cleared(parts)
            update.update(
                {
                    parts.category: name,
                    parts.usage_section: gr.update(visible=True),
                    parts.usage: f"**{category.title}**\n\n{category.business_usage}",
                    parts.provision_section: gr.update(visible=True),
                    parts.credits: f"{category.credits}\n\n{PROJECT_CREDITS}",
                }
            )
            try:
                count, found = runtime.run(lambda engine: category_examples(engine, name))
            except Exception as exc:  # noqa: BLE001 - shown in place (e.g. "no index yet")
                update[parts.provision_error] = error_box(exc)
                return update
            update[parts.usage] = f"**{category.title}** ({count} images)\n\n{category.business_usage}"
            update[parts.examples] = gr.update(value=[(image, cls) for _, image, cls in found])
            update[parts.example_ids] = [pid for pid, _, _ in found]
            return update

        def show_query(image: Image.Image) -> dict[Any, Any]:
            update = cleared_query(parts)
            update.update(
                {
                    parts.query: image,  # the decoded query: searching it decodes nothing again
                    parts.input_section: gr.update(visible=True),
                    parts.input_image: for_display(image),
                    parts.search_section: gr.update(visible=True),
                    parts.provision_error: error_box(None),
                }
            )
            return update

        def provision_failed(exc: BaseException) -> dict[Any, Any]:
            update = cleared_query(parts)
            update[parts.provision_error] = error_box(exc)
            return update

        def uploaded(category: str | None, path: str | None) -> dict[Any, Any]:
            if not path:
                return {}
            try:
                return show_query(query_from_upload(runtime, path, category))
            except Exception as exc:  # noqa: BLE001 - shown in place
                return {**provision_failed(exc), upload: None}  # empty the drop zone for the next try

        def stored(category: str | None, point_id: str) -> dict[Any, Any]:
            try:
                image = runtime.run(
                    lambda engine: query_image(engine, engine.image(category or "", point_id)[0], category)
                )
                return show_query(image)
            except Exception as exc:  # noqa: BLE001 - shown in place
                return provision_failed(exc)

        def picked(category: str | None, ids: list[str], event: gr.SelectData) -> dict[Any, Any]:
            if event.index is None or not 0 <= int(event.index) < len(ids):
                return {}
            return stored(category, ids[int(event.index)])

        def random_pick(category: str | None) -> dict[Any, Any]:
            try:
                pool = runtime.run(lambda engine: engine.examples(category or "", max(1, runtime.settings.max_k)))
            except Exception as exc:  # noqa: BLE001 - shown in place
                return provision_failed(exc)
            return stored(category, random.choice(pool).id)  # noqa: S311 - not security relevant

        def run_search(
            category: str | None, query: Image.Image | None, k_value: float, min_sim: float
        ) -> dict[Any, Any]:
            update = cleared_results(parts)
            try:
                if not category or query is None:
                    raise InvalidQueryError("choose a category and an input image first")
                found = search(runtime, category, query, k_value, min_sim)
                gallery = runtime.run(lambda engine: [(stored_image(engine, r), caption(r)) for r in found])
            except Exception as exc:  # noqa: BLE001 - shown in place
                update[parts.search_error] = error_box(exc)
                return update
            update.update(
                {
                    parts.results: gr.update(value=gallery, visible=True),
                    parts.table: gr.update(value=results_table(found), visible=True),
                    parts.credits_section: gr.update(visible=True),
                }
            )
            return update

        for name, button in buttons.items():
            button.click(partial(choose, name), outputs=outputs)
        reset_all.click(lambda: cleared(parts), outputs=outputs)
        upload.upload(uploaded, inputs=[parts.category, upload], outputs=[*outputs, upload])
        examples.select(picked, inputs=[parts.category, parts.example_ids], outputs=outputs)
        random_button.click(random_pick, inputs=parts.category, outputs=outputs)
        search_button.click(run_search, inputs=[parts.category, parts.query, k, min_similarity], outputs=outputs)
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
