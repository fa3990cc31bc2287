"""The offline logos-icons category: devicon + simple-icons SVGs rendered with cairosvg."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from visearch.categories import Category
from visearch.data.adapters import logo_icons
from visearch.data.adapters.runner import PrepareOptions, PrepareReport, prepare_category
from visearch.errors import DataError
from visearch.storage import LocalStore

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = Path(os.environ.get("VISEARCH_ICONS_SOURCE", REPO / ".visearch" / "npm" / "node_modules"))

SHAPES = {
    "circle": '<circle cx="12" cy="12" r="9" fill="{c}"/>',
    "square": '<rect x="3" y="3" width="18" height="18" fill="{c}"/>',
    "triangle": '<path d="M12 2 L22 21 L2 21 Z" fill="{c}"/>',
    "ring": '<circle cx="12" cy="12" r="8" fill="none" stroke="{c}" stroke-width="3"/>',
    "cross": '<path d="M10 2h4v8h8v4h-8v8h-4v-8H2v-4h8z" fill="{c}"/>',
    "wordmark": '<rect x="1" y="9" width="22" height="6" fill="{c}"/>',
}


def svg(body: str, view: str = "0 0 24 24") -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{view}">{body}</svg>'.encode()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_packages(root: Path) -> Path:
    """node_modules with a tiny devicon (JSON + icons/<brand>/*.svg) and simple-icons (JSON + icons/*.svg)."""
    devicon, simple = root / "devicon", root / "simple-icons"
    brands = {
        # brand: devicon variants (shape, colour)
        "acme": [
            ("original", "circle", "#d33"),
            ("plain", "square", "#d33"),
            ("line", "ring", "#d33"),
            ("original-wordmark", "wordmark", "#d33"),
        ],
        "globex": [("original", "triangle", "#36c"), ("plain", "cross", "#36c"), ("line", "ring", "#36c")],
        "tiny": [("original", "circle", "#393"), ("plain", "square", "#393")],
        "ghost": [
            ("original", "circle", "#fff"),
            ("plain", "square", "#fff"),
            ("line", "ring", "#fff"),
            ("plain-wordmark", "wordmark", "#fff"),
            ("original-wordmark", "cross", "#fff"),
        ],
    }
    for brand, variants in brands.items():
        for variant, shape, colour in variants:
            write(devicon / "icons" / brand / f"{brand}-{variant}.svg", svg(SHAPES[shape].format(c=colour)))
    # an alias variant shipped as a byte-identical copy, an empty drawing, a broken file
    write(devicon / "icons" / "acme" / "acme-line-wordmark.svg", svg(SHAPES["ring"].format(c="#d33")))
    write(devicon / "icons" / "ghost" / "ghost-empty.svg", svg(""))
    write(devicon / "icons" / "globex" / "globex-broken.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><path d=")
    (devicon / "devicon.json").write_text(json.dumps([{"name": "globex", "altnames": ["globex-corp"]}]))
    for slug, shape in (("acme", "cross"), ("globexcorp", "triangle"), ("unrelated", "circle")):
        write(simple / "icons" / f"{slug}.svg", svg(SHAPES[shape].format(c="").replace(' fill=""', "")))
    meta = [
        {"title": "ACME", "slug": "acme", "hex": "DD3333"},
        {"title": "Globex", "slug": "globexcorp", "hex": "F8F8F8"},
    ]
    write(simple / "data" / "simple-icons.json", json.dumps(meta).encode())
    return root


def prepare(tmp_path: Path, source: Path, **options: object) -> tuple[pd.DataFrame, Path, PrepareReport]:
    report = PrepareReport(dataset="logos-icons")
    candidates = logo_icons.scan(source, report, size=64)
    options = {"min_per_class": logo_icons.MIN_PER_CLASS, "show_progress": False} | options
    category = Category(name="logos-icons", title="Logos (icons)")
    prepare_category(LocalStore(tmp_path / "objects"), category, candidates, report, options=PrepareOptions(**options))
    folder = tmp_path / "objects" / "datasets" / "logos-icons"
    return pd.read_csv(folder / "meta.csv", index_col=0), folder / "images", report


def test_small_svg_packages(tmp_path: Path) -> None:
    meta, images, report = prepare(tmp_path, make_packages(tmp_path / "node_modules"))
    assert meta.groupby("class").size().to_dict() == {"acme": 6, "ghost": 5, "globex": 5}
    acme = meta[meta["class"] == "acme"].set_index("variant")
    assert set(acme.index) == {"original", "plain", "line", "original-wordmark", "brand-colour", "black"}
    assert set(acme["brand"]) == {"ACME"} and acme.loc["black", "licence"] == "CC0-1.0"
    assert acme.loc["plain", "package"] == "devicon" and acme.loc["plain", "licence"] == "MIT"
    for file in meta["file"]:
        image = Image.open(images / file)
        assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"
    # simple-icons in its brand colour vs black: same glyph, other pixels
    colour = Image.open(images / "acme/simple-icons-brand-colour.png").getpixel((32, 32))
    assert colour[0] > 200 and colour[1] < 80
    assert Image.open(images / "acme/simple-icons-black.png").getpixel((32, 32)) == (0, 0, 0)
    # white logos and near-white brand colours are drawn on black instead of vanishing on white
    assert Image.open(images / "ghost/devicon-original.png").getpixel((0, 0)) == (0, 0, 0)
    assert Image.open(images / "globex/simple-icons-brand-colour.png").getpixel((0, 0)) == (0, 0, 0)
    reasons = dict(report.dropped)
    assert reasons["devicon/acme/acme-line-wordmark.svg"].startswith("identical SVG")
    assert reasons["devicon/ghost/empty"].startswith("blank render")
    assert reasons["devicon/globex/broken"].startswith("unrenderable SVG")
    assert reasons["tiny/devicon-original.png"].startswith("class too small")
    assert "unrelated" not in set(meta["class"])


def test_missing_packages_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        logo_icons.scan(tmp_path / "nowhere", PrepareReport())
    with pytest.raises(DataError, match="fetch-logo-icons.sh"):
        logo_icons.scan(tmp_path, PrepareReport())


def test_real_npm_packages(tmp_path: Path) -> None:
    if not (NODE_MODULES / "devicon").is_dir() and os.environ.get("CI") != "true":
        pytest.skip(f"devicon/simple-icons not installed in {NODE_MODULES} (run scripts/fetch-logo-icons.sh)")
    report = PrepareReport(dataset="logos-icons")
    candidates = logo_icons.scan(NODE_MODULES, report)
    by_class = pd.Series([candidate.cls for candidate in candidates]).value_counts()
    assert (by_class >= logo_icons.MIN_PER_CLASS).sum() > 200  # design.md: ~211 brands with >= 5 variants
    subset = [
        candidate for candidate in candidates if candidate.cls in ("python", "docker", "react", "git", "postgresql")
    ]
    options = PrepareOptions(min_per_class=logo_icons.MIN_PER_CLASS, show_progress=False)
    category = Category(name="logos-icons", title="Logos (icons)")
    prepare_category(LocalStore(tmp_path / "objects"), category, subset, report, options=options)
    meta = pd.read_csv(tmp_path / "objects" / "datasets" / "logos-icons" / "meta.csv", index_col=0)
    assert set(meta["class"]) == {"python", "docker", "git", "postgresql"}  # react has 4 variants
    assert meta.groupby("class").size().min() >= logo_icons.MIN_PER_CLASS
    assert set(meta.loc[meta["class"] == "python", "brand"]) == {"Python"}
    assert {"brand-colour", "black", "original", "plain"} <= set(meta["variant"])
