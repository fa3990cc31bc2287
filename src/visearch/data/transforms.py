"""Image transforms for training (augmented) and for embedding/evaluation (deterministic)."""

from __future__ import annotations

import functools

from torchvision import transforms as T

from visearch.query_input import DECODE_MARGIN, decode_side  # noqa: F401 - re-exported: the decoders' size


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
