"""The offline logos-icons category: devicon + simple-icons SVGs rendered with cairosvg."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.helpers import ROOT, need
from tests.unit.data.datasets import make_packages
from visearch.categories import Category
from visearch.data.adapters import logo_icons
from visearch.data.adapters.runner import PrepareOptions, PrepareReport, prepare_category
from visearch.errors import DataError
from visearch.storage import LocalStore

NODE_MODULES = Path(os.environ.get("VISEARCH_ICONS_SOURCE", ROOT / ".visearch" / "npm" / "node_modules"))


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
    need(
        (NODE_MODULES / "devicon").is_dir(),
        f"devicon/simple-icons not installed in {NODE_MODULES} (run scripts/fetch-logo-icons.sh)",
    )
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
