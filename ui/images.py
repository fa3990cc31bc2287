"""Images of the UI: uploads decoded once at the scale needed, stored images ready for display."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from visearch.errors import InvalidImageError
from visearch.runtime import Runtime, read_upload
from visearch.search import SearchEngine, SearchResult

EXAMPLES_SHOWN = 12
DISPLAY_MIN_SIDE = 160
# Images are decoded once, at the scale shown (the input image box is 240 px high; gallery
# thumbnails ~160) or the model needs, whichever is larger: a phone photo is never decoded at
# full size (src/visearch/data/images.py: JPEG draft).
QUERY_SIDE = 240
THUMBNAIL_SIDE = DISPLAY_MIN_SIDE


def query_from_upload(runtime: Runtime, path: str | None, category: str | None = None) -> Image.Image:
    """An uploaded file decoded once (for display and search), or InvalidImageError with the reason."""
    if not path:
        raise InvalidImageError("no file received")
    data = read_upload(Path(path), runtime.settings.max_upload_bytes)
    return runtime.run(lambda engine: query_image(engine, data, category))


def query_image(engine: SearchEngine, data: bytes, category: str | None) -> Image.Image:
    """The query decoded once, at the scale both the input box and the category's model need."""
    model_side = engine.query_side(category) if category is not None else 0
    return engine.decode(data, min_side=max(QUERY_SIDE, model_side))


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
