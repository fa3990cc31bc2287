"""A torch Dataset over images in the object store (materialised to local files once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from visearch.data.images import load_scaled


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """Images from local paths with integer labels, transformed on access.

    ``min_side`` decodes each image at the scale the transform needs (see ``load_scaled``); ``None``
    decodes at full size. Either way EXIF orientation is applied, as for a query.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        min_side: int | None = None,
    ):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            rgb = load_scaled(image, self.min_side)
        return self.transform(rgb), self.labels[index]
