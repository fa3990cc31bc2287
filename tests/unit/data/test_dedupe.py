"""Duplicate detection: pixel digests, perceptual hashes (+ colour), embeddings, bucketed search."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from tests.helpers import photo
from visearch.data.dedupe import find_duplicates, hash_image, near_pairs


def reencode(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_exact_near_and_distinct_images() -> None:
    original = photo(0, 128)
    images = {
        "a.jpg": original,
        "b-different.jpg": photo(1, 128),
        "c-same-pixels.png": original.copy(),
        "d-recompressed.jpg": reencode(original, 40),
        "e-resized.jpg": original.resize((100, 100)).resize((128, 128)),
        "f-brighter.jpg": ImageEnhance.Brightness(original).enhance(1.05),
        "g-other.jpg": photo(2, 128),
        "h-other.jpg": photo(9, 128),
    }
    report = find_duplicates(list(images), [hash_image(image) for image in images.values()])
    found = {d.file: (d.of, d.kind) for d in report.duplicates}
    assert found == {
        "c-same-pixels.png": ("a.jpg", "exact"),
        "d-recompressed.jpg": ("a.jpg", "near"),
        "e-resized.jpg": ("a.jpg", "near"),
        "f-brighter.jpg": ("a.jpg", "near"),
    }
    assert report.groups == 1 and report.files() == set(found)
    assert report.counts() == {"exact": 1, "near": 3}
    assert "4 duplicate images in 1 groups" in report.summary()
    exact_only = find_duplicates(list(images), [hash_image(image) for image in images.values()], max_distance=None)
    assert {d.file for d in exact_only.duplicates} == {"c-same-pixels.png"}


def test_same_shape_in_another_colour_is_not_a_duplicate() -> None:
    red = photo(3, 96)
    swapped = Image.merge("RGB", red.split()[::-1])  # same grey structure, other colours
    hashes = [hash_image(red), hash_image(swapped)]
    assert find_duplicates(["red", "blue"], hashes).duplicates == []
    assert [d.kind for d in find_duplicates(["red", "blue"], hashes, max_colour=None).duplicates] == ["near"]


def test_embedding_duplicates_and_first_image_is_kept() -> None:
    hashes = [hash_image(photo(index, 64)) for index in range(4)]
    vectors = np.eye(4, dtype=np.float32)
    vectors[3] = (vectors[1] * 0.99 + vectors[3] * 0.1) / np.linalg.norm([0.99, 0.1])
    report = find_duplicates(["p0", "p1", "p2", "p3"], hashes, vectors=vectors, min_cosine=0.97)
    assert [(d.file, d.of, d.kind) for d in report.duplicates] == [("p3", "p1", "embedding")]
    assert report.to_dict()["duplicates"][0]["distance"] < 0.03


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 600, dtype=np.uint64)
    flips = rng.integers(0, 64, (300, 3))
    planted = base[:300].copy()
    for row, bits in enumerate(flips):  # copies 1-3 bits away from their originals
        for bit in bits[: 1 + row % 3]:
            planted[row] ^= np.uint64(1) << np.uint64(bit)
    hashes = np.concatenate([base, planted])
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    for max_distance in (0, 2, 4):
        rows, cols = np.nonzero(np.triu(distances <= max_distance, k=1))
        expected = set(zip(rows.tolist(), cols.tolist(), strict=True))
        assert set(map(tuple, near_pairs(hashes, max_distance).tolist())) == expected
    assert len(near_pairs(hashes, 4)) >= 300


def test_frozen_trunk_embeddings_find_a_cropped_copy(tmp_path: Path) -> None:
    """A crop changes the pHash a lot; the pretrained trunk still sees the same picture."""
    from visearch.embed import trunk_embedder

    original = photo(0, 128)
    images = {
        "a.png": original,
        "b.png": original.crop((4, 4, 124, 124)).resize((128, 128)),
        "c.png": photo(1, 128),
        "d.png": photo(3, 128),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
    hashes = [hash_image(image) for image in images.values()]
    vectors = trunk_embedder(show_progress=False)([tmp_path / name for name in images])
    assert vectors.shape[0] == 4 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert not find_duplicates(list(images), hashes).duplicates  # the crop moved the pHash
    report = find_duplicates(list(images), hashes, vectors=vectors, min_cosine=0.93)
    assert [(d.file, d.of) for d in report.duplicates] == [("b.png", "a.png")]
    assert float(vectors[0] @ vectors[2]) < 0.9
