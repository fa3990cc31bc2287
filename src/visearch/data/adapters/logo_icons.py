"""Offline brand logos: the npm packages ``devicon`` (MIT) and ``simple-icons`` (CC0) rendered to PNG.

``--source`` is a ``node_modules`` folder (see ``scripts/fetch-logo-icons.sh``). A class is a
devicon brand; its images are every distinct devicon SVG of the brand (original, plain, line and
their wordmark forms) plus, when simple-icons has the brand, its glyph in the brand colour and in
black. Classes with fewer than five images are dropped by the caller's ``min_per_class``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from PIL import Image

from visearch.data.adapters.common import Candidate, Loaded, encode_png, require_dir
from visearch.data.images import to_rgb
from visearch.data.meta import DataReport
from visearch.errors import DataError, RejectedFileError

DEFAULT_SIZE = 128
MIN_PER_CLASS = 5
MARGIN = 0.06  # of the side, on each side: logos keep some background around them
LIGHT = 0.85  # relative luminance above which a brand colour vanishes on white: render it on black


@dataclass
class Icon:
    """One SVG icon of a brand, from devicon or simple-icons, with its title and licence."""

    brand: str
    variant: str
    source: str  # devicon | simple-icons
    svg: bytes
    title: str
    licence: str
    fill: str | None = None  # simple-icons glyphs carry no colour: set it on the root element


def locate(source: Path) -> tuple[Path | None, Path | None]:
    """The devicon and simple-icons package folders under ``source`` (a node_modules folder or its parent)."""
    require_dir(source, "npm node_modules folder")
    base = source / "node_modules" if (source / "node_modules").is_dir() else source
    devicon, simple = base / "devicon", base / "simple-icons"
    found = (devicon if (devicon / "icons").is_dir() else None, simple if (simple / "icons").is_dir() else None)
    if found[0] is None:
        raise DataError(f"no devicon package in {base} (run scripts/fetch-logo-icons.sh and pass its node_modules)")
    return found


def _read_json(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, list) else []


def devicon_icons(folder: Path, report: DataReport) -> dict[str, list[Icon]]:
    """Distinct SVGs per brand folder; byte-identical variants (aliases) are reported once."""
    icons: dict[str, list[Icon]] = {}
    for brand_dir in sorted(path for path in (folder / "icons").iterdir() if path.is_dir()):
        brand, seen = brand_dir.name, set()
        for svg_path in sorted(brand_dir.glob("*.svg"), key=lambda path: (len(path.stem), path.stem)):
            data = svg_path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            variant = svg_path.stem.removeprefix(f"{brand}-")
            if digest in seen:
                report.drop(f"devicon/{brand}/{svg_path.name}", "identical SVG: same file as another variant")
                continue
            seen.add(digest)
            icons.setdefault(brand, []).append(Icon(brand, variant, "devicon", data, brand, "MIT"))
    return icons


def simple_icons(folder: Path, names: dict[str, str]) -> dict[str, list[Icon]]:
    """Brand-colour and black glyphs of the simple-icons slugs that match a devicon brand (or alias)."""
    meta = {str(item.get("slug")): item for item in _read_json(folder / "data" / "simple-icons.json")}
    icons: dict[str, list[Icon]] = {}
    # An exact slug match wins over an alternative name that points at the same brand.
    for slug, brand in sorted(names.items(), key=lambda item: (item[0] != item[1], item[0])):
        path = folder / "icons" / f"{slug}.svg"
        if brand in icons or not path.is_file():
            continue
        item = meta.get(slug, {})
        title, colour = str(item.get("title") or brand), str(item.get("hex") or "")
        licence = str((item.get("license") or {}).get("type", "CC0-1.0"))
        data = path.read_bytes()
        variants = [Icon(brand, "brand-colour", "simple-icons", data, title, licence, f"#{colour}")] if colour else []
        variants.append(Icon(brand, "black", "simple-icons", data, title, licence, "#000000"))
        icons[brand] = variants
    return icons


def brand_names(folder: Path, brands: list[str]) -> dict[str, str]:
    """simple-icons slug → devicon brand, from devicon's names and alternative names."""
    names = {re.sub(r"[^a-z0-9]", "", brand.lower()): brand for brand in brands}
    for item in _read_json(folder / "devicon.json"):
        brand = str(item.get("name", ""))
        if brand in brands:
            for alt in item.get("altnames", []) or []:
                names.setdefault(re.sub(r"[^a-z0-9]", "", str(alt).lower()), brand)
    return names


def scan(source: Path, report: DataReport, *, size: int = DEFAULT_SIZE) -> list[Candidate]:
    """One candidate per variant of every devicon brand, sorted by brand."""
    devicon, simple = locate(source)
    assert devicon is not None
    by_brand = devicon_icons(devicon, report)
    extra = simple_icons(simple, brand_names(devicon, list(by_brand))) if simple else {}
    candidates = []
    for brand in sorted(by_brand):
        for icon in by_brand[brand] + extra.get(brand, []):
            title = extra[brand][0].title if brand in extra else brand
            captions = {"brand": title, "variant": icon.variant, "package": icon.source, "licence": icon.licence}
            file = f"{brand}/{icon.source}-{icon.variant}.png"
            candidates.append(
                Candidate(file, brand, captions, _loader(icon, size), f"{icon.source}/{brand}/{icon.variant}")
            )
    return candidates


def _loader(icon: Icon, size: int) -> Callable[[], Loaded]:
    def load() -> Loaded:
        image = render_svg(icon.svg, size=size, fill=icon.fill)
        return Loaded(image, encode_png(image))

    return load


def render_svg(svg: bytes, *, size: int = DEFAULT_SIZE, fill: str | None = None) -> Image.Image:
    """Render an SVG centred on a square RGB canvas (white, or black for a very light ``fill``)."""
    import cairosvg

    if fill:
        svg = re.sub(rb"<svg\b", f'<svg fill="{fill}"'.encode(), svg, count=1)
    inner = round(size * (1 - 2 * MARGIN))
    try:
        image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, output_width=inner)))
        if image.height > image.width:  # tall icon: fit the height instead
            image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, output_height=inner)))
        image.load()
    except Exception as exc:  # noqa: BLE001 - cairosvg raises many types on bad SVG
        raise RejectedFileError(f"unrenderable SVG: {type(exc).__name__}: {exc}") from exc
    # Light brand colours, and SVGs drawn in white for dark pages, go on black.
    dark_first = bool(fill) and _luminance(fill or "") > LIGHT
    for background in ((0, 0, 0), (255, 255, 255)) if dark_first else ((255, 255, 255), (0, 0, 0)):
        canvas = Image.new("RGB", (size, size), background)
        rgba = image.convert("RGBA")
        canvas.paste(rgba, ((size - rgba.width) // 2, (size - rgba.height) // 2), mask=rgba.getchannel("A"))
        extrema = cast(tuple[tuple[int, int], ...], canvas.getextrema())  # per band for RGB
        if max(high - low for low, high in extrema) >= 16:
            return to_rgb(canvas)
    raise RejectedFileError("blank render: the SVG draws nothing visible on white or black")


def _luminance(colour: str) -> float:
    value = colour.lstrip("#")
    if len(value) != 6:
        return 0.0
    red, green, blue = (int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue
