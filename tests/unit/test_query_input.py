"""The query path's numpy preprocessing equals torchvision's evaluation transform, pixel for pixel and answer for answer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY, phone_photo
from tests.unit.homes import search_engine
from visearch.data.images import decode_image
from visearch.data.transforms import eval_transform
from visearch.model_files import ModelSpec
from visearch.normalize import IMAGENET_NORMALIZE, LITE_NORMALIZE
from visearch.query_input import decode_side, input_batch
from visearch.search import SearchEngine
from visearch.settings import Settings


def torchvision_batch(images: list[Image.Image], spec: ModelSpec) -> np.ndarray:
    """The query path before: torchvision's Resize, CenterCrop, ToTensor, Normalize, stacked."""
    transform = eval_transform(spec.input_size, spec.normalize)
    return np.stack([transform(image).numpy() for image in images]).astype(np.float32)


def gradient(width: int, height: int) -> Image.Image:
    """A real-valued RGB picture of ``width``×``height`` (every level and a texture, so resizing matters)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize("normalize", [LITE_NORMALIZE, IMAGENET_NORMALIZE])
@pytest.mark.parametrize("input_size", [32, 64, 96])
def test_input_equals_torchvision_transform(normalize: tuple[tuple[float, ...], ...], input_size: int) -> None:
    spec = ModelSpec(input_size=input_size, normalize=normalize)  # type: ignore[arg-type]
    phone = decode_image(phone_photo(), min_side=decode_side(input_size))
    # Square, landscape and portrait, smaller and larger than the input, odd sides (crop rounding),
    # exactly the input size (no resize), and a phone photo as the query path decodes it.
    images = [
        gradient(w, h)
        for w, h in [(28, 28), (input_size, input_size), (101, 57), (57, 101), (640, 481), (3, 200), (333, 334)]
    ]
    images.append(phone)
    ours = input_batch(images, input_size, normalize)
    theirs = torchvision_batch(images, spec)
    assert ours.shape == theirs.shape == (len(images), 3, input_size, input_size)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def test_search_answers_equal_the_torchvision_path(engine: SearchEngine) -> None:
    model = engine.model_for(TINY)
    side = engine.query_side(TINY)
    datas = [engine.store.get_bytes(example.image_key) for example in engine.examples(TINY, limit=6)]
    datas.append(phone_photo())
    for data in datas:
        before = model.embed(torchvision_batch([engine.decode(data, min_side=side)], model.spec))[0]
        expected = engine.vector_search(TINY, list(map(float, before)), k=8).results
        answer = engine.search(TINY, data, k=8).results
        assert [r.id for r in answer] == [r.id for r in expected]
        assert [r.score for r in answer] == pytest.approx([r.score for r in expected], abs=1e-5)
