"""Decoded images → the model's input array, in PIL and numpy alone (no torch, no torchvision per query).

The same pixels as the evaluation transform of :mod:`visearch.data.transforms` (Resize, CenterCrop,
ToTensor, Normalize), which the tests check value for value: the shorter side resized to the input
size with PIL's bilinear filter (what torchvision calls on a PIL image), the centre cropped, and
each 8-bit value mapped through a 256-entry table per channel holding ``(v / 255 - mean) / std``
computed in float32 as torchvision computes it. The table lookup writes straight into the batch
array: 0.06 ms a demo image against 0.16 ms through torchvision's four modules and their tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image

# Images are decoded with a shorter side of at least this many times the model's input size, not
# at full size: the final resize still averages >= 2x2 source pixels per input pixel, and a
# 12-megapixel photo embeds at cosine > 0.99 to its full-size decode (tests/unit/data/test_images.py).
DECODE_MARGIN = 2

Normalize = tuple[tuple[float, ...], tuple[float, ...]]


def decode_side(input_size: int) -> int:
    """The shorter side to decode images at for a model of ``input_size`` (``min_side`` of the decoders)."""
    return DECODE_MARGIN * input_size


@functools.lru_cache(maxsize=16)
def value_table(normalize: Normalize) -> np.ndarray:
    """3×256 float32: the normalised value of each 8-bit level per channel, as ToTensor + Normalize compute it."""
    mean, std = (np.asarray(values, dtype=np.float32) for values in normalize)
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    table = (levels[None, :] - mean[:, None]) / std[:, None]
    table.flags.writeable = False  # shared by every thread
    return table


def resized_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (bilinear, longer side truncated as torchvision does), then the centre size×size."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if (left, top, new_w, new_h) != (0, 0, size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


def fill_input(out: np.ndarray, image: Image.Image, size: int, normalize: Normalize) -> None:
    """Write one RGB image into ``out`` (3×size×size float32), resized, cropped and normalised."""
    pixels = np.asarray(resized_crop(image, size))  # size×size×3 uint8
    table = value_table(normalize)
    for channel in range(3):
        np.take(table[channel], pixels[:, :, channel], out=out[channel])


def input_batch(images: Sequence[Image.Image], input_size: int, normalize: Normalize) -> np.ndarray:
    """N×3×S×S float32: the model's input for ``images`` (RGB), in one preallocated array.

    ``input_size`` and ``normalize`` are the model's (its ``ModelSpec``; this module sits below the
    model's files in the library's layers, so the transforms can share :func:`decode_side`).
    """
    batch = np.empty((len(images), 3, input_size, input_size), dtype=np.float32)
    normalize = (tuple(normalize[0]), tuple(normalize[1]))  # hashable for the table cache
    for position, image in enumerate(images):
        fill_input(batch[position], image, input_size, normalize)
    return batch
