"""Fashion-MNIST (Zalando, MIT): IDX files (Debian `dataset-fashion-mnist`) → PNGs + meta CSV."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from visearch.data.adapters.common import Candidate, Loaded
from visearch.data.meta import DataReport
from visearch.errors import DataError

READABLE = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Class names as folder and file names (no '/' or spaces): T-shirt-top, Ankle-boot.
CLASS_NAMES = tuple(name.replace("/", "-").replace(" ", "-") for name in READABLE)
DEBIAN_SOURCE = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    magic = int.from_bytes(data[:4], "big")
    dims = magic & 0xFF
    if magic >> 8 != 0x08 or dims not in (1, 3):
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


SPLITS = ("train", "t10k")
ALL = "all"


def iter_images(
    source: Path, *, split: str = "t10k", per_class: int | None = None
) -> Iterator[tuple[str, str, int, bytes, dict[str, str]]]:
    """Yield (file, class, label, png bytes, captions), at most ``per_class`` per class, in file order.

    ``split``: ``train`` (60,000 images), ``t10k`` (10,000) or ``all`` (both, train first: 70,000).
    """
    if split == ALL:
        remaining: dict[int, int | None] = dict.fromkeys(range(len(CLASS_NAMES)), per_class)
        for part in SPLITS:
            yield from _iter_split(source, part, remaining)
        return
    if split not in SPLITS:
        raise DataError(f"unknown Fashion-MNIST split {split!r} (train, t10k or all)")
    yield from _iter_split(source, split, {label: per_class for label in range(len(CLASS_NAMES))})


def _iter_split(
    source: Path, split: str, remaining: dict[int, int | None]
) -> Iterator[tuple[str, str, int, bytes, dict[str, str]]]:
    """One split's images; ``remaining`` (label → images still wanted, None: all) is counted down."""
    images_path = next(
        (p for p in (source / f"{split}-images-idx3-ubyte.gz", source / f"{split}-images-idx3-ubyte") if p.exists()),
        None,
    )
    labels_path = next(
        (p for p in (source / f"{split}-labels-idx1-ubyte.gz", source / f"{split}-labels-idx1-ubyte") if p.exists()),
        None,
    )
    if images_path is None or labels_path is None:
        raise DataError(f"no Fashion-MNIST {split} IDX files in {source} (apt-get install dataset-fashion-mnist)")
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels")
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        label = int(label)
        left = remaining[label]
        if left is not None:
            if left <= 0:
                continue
            remaining[label] = left - 1
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
        name = CLASS_NAMES[label]
        captions = {"article": READABLE[label], "source": f"Fashion-MNIST {split} #{index}"}
        yield f"{name}/{split}-{index:05d}.png", name, label, buffer.getvalue(), captions


def scan(source: Path, report: DataReport, *, split: str = "t10k", per_class: int | None = None) -> list[Candidate]:
    """``iter_images`` as runner candidates (the PNGs are small: decoded once, kept in memory)."""
    del report  # IDX files are all-or-nothing: a bad file is a DataError for the whole run
    return [
        Candidate(file, cls, captions, _png_loader(data), captions["source"])
        for file, cls, _, data, captions in iter_images(source, split=split, per_class=per_class)
    ]


def labels() -> dict[str, int]:
    """Fashion-MNIST's own label ids (0 = T-shirt/top ... 9 = Ankle boot)."""
    return {name: label for label, name in enumerate(CLASS_NAMES)}


def _png_loader(data: bytes) -> Callable[[], Loaded]:
    def load() -> Loaded:
        return Loaded(Image.open(io.BytesIO(data)).convert("RGB"), data)

    return load
