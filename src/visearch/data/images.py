"""Decode untrusted image bytes into a safe RGB PIL image, or raise InvalidImageError."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from visearch.errors import ImageTooLargeError, InvalidImageError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


def decode_image(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Return the image as RGB, EXIF-rotated, first frame only.

    Raises InvalidImageError for empty, oversized, non-image, truncated or bomb-sized input:
    the pixel count is checked from the header before any pixel is decoded.
    """
    if not data:
        raise InvalidImageError("empty image: no bytes received")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image too large: {len(data)} bytes (limit {max_bytes})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageTooLargeError(f"image too large: {width}x{height} pixels (limit {max_pixels})")
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened) or opened)
    except InvalidImageError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not a supported image: the bytes are no known image format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"corrupt or truncated image: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten alpha onto white and convert any mode (L, P, CMYK, I;16...) to 8-bit RGB."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping to white.
        return image.point(lambda value: value / 256).convert("L").convert("RGB")
    return image.convert("RGB")
