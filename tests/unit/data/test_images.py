"""Decoding untrusted image bytes: clear errors for bad data, limits before decoding, modes and EXIF rotation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import PHONE_SIZE, phone_photo
from visearch.data.dataset import ImageFiles
from visearch.data.images import decode_image
from visearch.data.transforms import decode_side
from visearch.errors import ImageTooLargeError, InvalidImageError
from visearch.inference import TorchEmbedder, preprocess
from visearch.model import create_model


def png_bytes(size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "I;16") else (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not a supported image"),
        (png_bytes()[:40], "not a supported image"),
        (b"GIF89a" + b"\x00" * 20, "not a supported image"),
    ],
)
def test_decode_rejects_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


def test_decode_rejects_truncated_image_data() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        decode_image(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def test_decode_limits_bytes_and_pixels_before_decoding() -> None:
    with pytest.raises(InvalidImageError, match="bytes"):
        decode_image(png_bytes(), max_bytes=10)
    with pytest.raises(InvalidImageError, match="pixels"):
        decode_image(png_bytes((300, 300)), max_pixels=200 * 200)


def test_decode_converts_modes_and_applies_exif_rotation() -> None:
    assert decode_image(png_bytes(mode="L")).mode == "RGB"
    assert decode_image(png_bytes(mode="RGBA")).getpixel((0, 0)) == (10, 20, 30)
    sixteen = np.full((4, 4), 40000, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(sixteen).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).getpixel((0, 0))[0] == 40000 // 256
    # A 20x10 JPEG tagged "rotate 90°" (EXIF orientation 6) must come out 10x20.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).size == (10, 20)


# --- decoding at the scale the model needs (phone photos) ----------------------------------------
@pytest.fixture(scope="module")
def phone() -> bytes:
    return phone_photo()


@pytest.fixture(scope="module")
def phone_full(phone: bytes) -> Image.Image:
    return decode_image(phone)


def test_phone_photo_decodes_at_reduced_scale_upright(phone: bytes, phone_full: Image.Image) -> None:
    assert phone_full.size == PHONE_SIZE  # EXIF orientation 6 turned the stored portrait pixels
    small = decode_image(phone, min_side=192)
    # JPEG DCT scaling at 1/8 (the largest that keeps both sides >= 192), then turned upright.
    assert small.size == (504, 378)
    assert small.mode == "RGB"
    # The same picture, the same way up: close to the full decode shrunk to the same size.
    reference = np.asarray(phone_full.resize(small.size, Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(np.asarray(small, dtype=np.float32) - reference).mean() < 4


@pytest.mark.parametrize("input_size", [64, 96])  # 64: the 1/8 decode is box-reduced 2x more
def test_phone_photo_embeds_like_its_full_size_decode(phone: bytes, phone_full: Image.Image, input_size: int) -> None:
    model = TorchEmbedder(create_model("efficientnet-lite0", [], input_size).eval())
    small = decode_image(phone, min_side=decode_side(model.spec.input_size))
    full_vector, small_vector = model.embed(preprocess([phone_full, small], model.spec))
    assert float(full_vector @ small_vector) > 0.99


def test_reduced_decode_keeps_the_limits(phone: bytes) -> None:
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode_image(phone, max_pixels=12_000_000, min_side=192)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(phone, max_bytes=1_000_000, min_side=192)
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        decode_image(phone[: len(phone) // 2], min_side=192)


def test_min_side_reduces_other_formats_and_keeps_small_images() -> None:
    big = decode_image(png_bytes((1200, 900)), min_side=100)
    assert big.size == (134, 100)  # no DCT scaling for PNG: box-reduced 9x (the last column partly)
    assert decode_image(png_bytes((300, 150)), min_side=100).size == (300, 150)  # within 2x: left as is
    assert decode_image(png_bytes((40, 30), mode="RGBA"), min_side=100).size == (40, 30)


def test_image_files_decode_at_scale_and_upright(tmp_path: Path, phone: bytes, phone_full: Image.Image) -> None:
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone)
    sizes = []
    for min_side in (None, 192):
        dataset = ImageFiles([path], [3], lambda image: torch.tensor(image.size), min_side=min_side)
        size, label = dataset[0]
        sizes.append(tuple(size.tolist()))
        assert label == 3
    assert sizes == [PHONE_SIZE, (504, 378)]  # EXIF orientation applied in both, as for a query
