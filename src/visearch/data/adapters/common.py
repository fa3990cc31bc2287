"""Helpers shared by the dataset adapters: candidates, safe names, image checks, VOC boxes."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from visearch.data.images import decode_image
from visearch.data.meta import DataReport
from visearch.errors import DataError, RejectedFileError

MIN_BOX_SIDE = 8
JPEG_QUALITY = 92
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class Loaded:
    """An image ready to store: the RGB pixels (for hashing) and the bytes to write."""

    image: Image.Image
    data: bytes


@dataclass
class Candidate:
    """One future image of the category: where it goes, its class and captions, how to load it.

    ``load`` does the expensive part (decode, check, crop, encode) and raises ``RejectedFileError`` (or any
    VisearchError) when the file must be dropped.
    """

    file: str
    cls: str
    captions: Mapping[str, object]
    load: Callable[[], Loaded]
    source: str = ""


@dataclass
class VocObject:
    """One object of a Pascal-VOC annotation: its label and bounding box."""

    name: str
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax in pixels


@dataclass
class VocAnnotation:
    """A parsed Pascal-VOC annotation file: image file name, stated size and objects."""

    filename: str = ""
    size: tuple[int, int] | None = None  # width, height as the XML states them
    objects: list[VocObject] = field(default_factory=list)


def require_dir(path: Path, what: str) -> Path:
    """Guard for a whole-run failure: the source folder must exist."""
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path}")
    return path


def find_dir(source: Path, name: str, *, depth: int = 2) -> Path | None:
    """``source/name`` or the first ``name`` folder up to ``depth`` levels below (Kaggle zips nest)."""
    if source.name == name and source.is_dir():
        return source
    frontier = [source]
    for _ in range(depth + 1):
        for folder in frontier:
            if (folder / name).is_dir():
                return folder / name
        frontier = [child for folder in frontier for child in sorted(folder.iterdir()) if child.is_dir()]
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_part(text: str) -> str:
    """One path component made of portable characters (object keys, and no '..' for the meta checks)."""
    cleaned = _UNSAFE.sub("_", text.strip()).strip("._") or "_"
    return re.sub(r"\.{2,}", ".", cleaned)


def safe_file(*parts: str) -> str:
    """A relative file name of safe path components joined by ``/``."""
    return "/".join(safe_part(part) for part in parts)


def read_rgb(path: Path, *, require_rgb: bool = False) -> tuple[Image.Image, bytes]:
    """Decode a source image; ``require_rgb`` rejects files that are not stored as RGB (seed rule)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RejectedFileError(f"unreadable file: {exc}") from exc
    if require_rgb:
        mode = source_mode(data)
        if mode != "RGB":
            raise RejectedFileError(f"not RGB: image mode {mode}")
    try:
        return decode_image(data, max_bytes=MAX_FILE_BYTES), data
    except DataError:
        raise
    except Exception as exc:  # InvalidImageError and friends: one reason per file
        raise RejectedFileError(f"unreadable image: {exc}") from exc


def file_loader(
    path: Path, *, require_rgb: bool = False, min_bytes: int = 0, keep_format: bool = False
) -> Callable[[], Loaded]:
    """A function that loads a whole image file when called.

    JPEG bytes (any format with ``keep_format``) are stored unchanged, other formats re-encoded as
    JPEG (the adapters name their files ``.jpg``).
    """

    def load() -> Loaded:
        if not path.is_file():
            raise RejectedFileError(f"image missing: {path.name}")
        if min_bytes:
            size = path.stat().st_size
            if size <= min_bytes:
                raise RejectedFileError(f"file too small: {size} bytes (rule: more than {min_bytes})")
        image, data = read_rgb(path, require_rgb=require_rgb)
        return Loaded(image, data if keep_format or data[:3] == b"\xff\xd8\xff" else encode_jpeg(image))

    return load


def source_mode(data: bytes) -> str:
    """The PIL mode an image file is stored in (header only); RejectedFileError if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.mode
    except Exception as exc:  # noqa: BLE001 - any header failure means "unreadable"
        raise RejectedFileError(f"unreadable image: {exc}") from exc


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """The image as JPEG bytes (converted to RGB first)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def annotated_boxes(xml: Path, relative: str, report: DataReport) -> list[VocObject]:
    """The boxes of an image's VOC annotation; an unusable or empty annotation costs the image (reported)."""
    try:
        objects = parse_voc(xml).objects
    except RejectedFileError as exc:
        report.drop(relative, str(exc))
        return []
    if not objects:
        report.drop(relative, "no box: the annotation lists no object")
    return objects


def encode_png(image: Image.Image) -> bytes:
    """The image as optimised PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def parse_voc(path: Path) -> VocAnnotation:
    """Read a Pascal-VOC XML file (Stanford Dogs' files have no extension); RejectedFileError if unusable."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise RejectedFileError(f"annotation missing: {path.name}") from exc
    except (ET.ParseError, OSError) as exc:
        raise RejectedFileError(f"bad annotation XML: {path.name}: {exc}") from exc
    if root.tag != "annotation":
        raise RejectedFileError(f"bad annotation XML: {path.name}: root is <{root.tag}>, not <annotation>")
    annotation = VocAnnotation(filename=root.findtext("filename", "").strip())
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width and height:
        try:
            annotation.size = (int(float(width)), int(float(height)))
        except ValueError:
            annotation.size = None
    for number, obj in enumerate(root.iter("object")):
        try:
            box = tuple(int(float(obj.findtext(f"bndbox/{key}", ""))) for key in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise RejectedFileError(f"bad annotation XML: {path.name}: object {number} has no numeric bndbox") from exc
        annotation.objects.append(VocObject(obj.findtext("name", "").strip(), box))  # type: ignore[arg-type]
    return annotation


def crop_box(image: Image.Image, box: tuple[int, int, int, int], *, min_side: int = MIN_BOX_SIDE) -> Image.Image:
    """Crop a VOC box (1-based, inclusive coordinates) clipped to the image; RejectedFileError if outside or tiny.

    Annotators often overshoot the border by a pixel or two, so the box is clipped rather than
    dropped; a box that misses the image or leaves less than ``min_side`` pixels is dropped.
    """
    xmin, ymin, xmax, ymax = box
    if xmax <= xmin or ymax <= ymin:
        raise RejectedFileError(f"empty box: {box}")
    width, height = image.size
    left, top = max(0, xmin - 1), max(0, ymin - 1)
    right, bottom = min(width, xmax), min(height, ymax)
    if right <= left or bottom <= top:
        raise RejectedFileError(f"box outside the image: {box} in {width}x{height}")
    if min(right - left, bottom - top) < min_side:
        raise RejectedFileError(f"box too small after clipping: {box} in {width}x{height}")
    return image.crop((left, top, right, bottom))


def box_loader(
    read: Callable[[Path], tuple[Image.Image, bytes]], path: Path, box: tuple[int, int, int, int]
) -> Callable[[], Loaded]:
    """Load one VOC box of a photo as its own JPEG; ``read`` is shared (cached) by the photo's boxes."""

    def load() -> Loaded:
        image, _ = read(path)
        crop = crop_box(image, box)
        return Loaded(crop, encode_jpeg(crop))

    return load


def class_labels(classes: list[str]) -> dict[str, int]:
    """Labels 0..n-1 in sorted class order: stable across runs of the same data."""
    return {cls: label for label, cls in enumerate(sorted(set(classes)))}
