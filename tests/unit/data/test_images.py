"""Decoding untrusted image bytes: clear errors for bad data, limits before decoding, modes and EXIF rotation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visearch.data.images import decode_image
from visearch.errors import InvalidImageError


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
