"""The "unlike anything in this category" notice judges images the index does not hold.

An indexed image finds itself (similarity 1.0) and can never test the floor. Mirrored or slightly
blurred copies of the indexed images are the category's usual images seen anew: their nearest
neighbour lies in the category's usual range, so the notice must stay quiet for (nearly) all of
them; images from elsewhere must get it. A floor at the wrong percentile (the 99th instead of
``VISEARCH_UNUSUAL_PERCENTILE``'s 1st) flags most of the copies, and fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from tests.helpers import TINY, photo
from tests.unit.homes import search_engine
from visearch.search import SearchEngine
from visearch.settings import Settings

# With the 1st-percentile floor, about 1 in 100 of the category's own nearest-neighbour
# similarities lies below it: a copy now and then may fall there too, but never 1 in 10.
MOST_FLAGGED = 0.1
# SearchAnswer.notice's documented text (the API's contract, whichever module defines the constant).
UNUSUAL_NOTICE = "unlike anything in this category"
ALTERED: dict[str, Callable[[Image.Image], Image.Image]] = {
    "mirrored": ImageOps.mirror,
    "blurred": lambda image: image.filter(ImageFilter.GaussianBlur(0.7)),
}


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


@pytest.mark.parametrize("how", sorted(ALTERED))
def test_altered_copies_of_indexed_images_are_not_unusual(engine: SearchEngine, how: str) -> None:
    stats = engine.stats(engine.live_version(TINY))
    assert stats is not None and stats.points > 1
    examples = engine.examples(TINY, limit=engine.settings.max_k)
    assert len(examples) == stats.points  # every indexed image
    flagged = []
    for example in examples:
        copy = ALTERED[how](engine.decode(engine.store.get_bytes(example.image_key)))
        answer = engine.search(TINY, copy, k=3)
        assert answer.results[0].score < 1.0  # a new image, not the indexed one itself
        if answer.notice is not None:
            flagged.append(example.file)
    assert len(flagged) <= MOST_FLAGGED * len(examples), f"{len(flagged)} {how} copies called unusual: {flagged}"


def test_images_from_elsewhere_are_unusual(engine: SearchEngine) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    flat = Image.new("RGB", (64, 64), (200, 30, 30))
    for name, image in {"noise": noise, "flat red": flat, "photo 1": photo(1), "photo 2": photo(2)}.items():
        assert engine.search(TINY, image, k=3).notice == UNUSUAL_NOTICE, name
