"""Schemathesis hooks for the service's contract test: what a file of each image media type is.

The OpenAPI document says a file field holds an image (``serving.contract.IMAGE_MEDIA_TYPES``);
schemathesis would fill it with arbitrary bytes, which no server can take as an image. These
strategies make real (small, random) images of each declared type, so a schema-valid request is
really valid and the server must accept it. Loaded by ``SCHEMATHESIS_HOOKS=<this file>``.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from serving.contract import IMAGE_MEDIA_TYPES

FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}


def encoded(pil_format: str) -> st.SearchStrategy[bytes]:
    """Random small RGB images encoded in ``pil_format``."""

    def encode(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", size, colour).save(out, format=pil_format)
        return out.getvalue()

    side = st.integers(min_value=1, max_value=64)
    channel = st.integers(min_value=0, max_value=255)
    return st.builds(encode, st.tuples(side, side), st.tuples(channel, channel, channel))


for media_type in (item.strip() for item in IMAGE_MEDIA_TYPES.split(",")):
    schemathesis.openapi.media_type(media_type, encoded(FORMATS[media_type.split("/")[1]]))
