"""Image transforms for training (augmented) and for embedding/evaluation (deterministic)."""

from __future__ import annotations

import functools

from torchvision import transforms as T

# Images are decoded with a shorter side of at least this many times the model's input size, not
# at full size: the final resize still averages >= 2x2 source pixels per input pixel, and a
# 12-megapixel photo embeds at cosine > 0.99 to its full-size decode (tests/unit/data/test_images.py).
DECODE_MARGIN = 2


def decode_side(input_size: int) -> int:
    """The shorter side to decode images at for a model of ``input_size`` (``min_side`` of the decoders)."""
    return DECODE_MARGIN * input_size


# Built once per model shape: making the four modules costs 0.1 ms, 5% of a whole query. They
# hold no state, so threads share them.
@functools.lru_cache(maxsize=16)
def eval_transform(input_size: int, normalize: tuple[tuple[float, ...], tuple[float, ...]]) -> T.Compose:
    """Deterministic preprocessing for evaluation and inference: resize, center crop, normalise."""
    return T.Compose(
        [
            T.Resize(input_size),
            T.CenterCrop(input_size),
            T.ToTensor(),
            T.Normalize(*normalize),
        ]
    )


def train_transform(input_size: int, normalize: tuple[tuple[float, ...], tuple[float, ...]]) -> T.Compose:
    """Light augmentation that keeps the product recognisable (the seed defined but never applied it)."""
    return T.Compose(
        [
            T.RandomResizedCrop(input_size, scale=(0.7, 1.0), ratio=(0.85, 1.15)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1),
            T.ToTensor(),
            T.Normalize(*normalize),
        ]
    )
