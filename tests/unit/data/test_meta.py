"""Meta CSV contract, image decoding and the class-disjoint split, on real files."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visearch.data.images import decode_image
from visearch.data.meta import DataReport, check_rows, parse_meta, write_meta
from visearch.data.preprocess import split_by_class, validate_category
from visearch.errors import DataError, InvalidImageError


def png_bytes(size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "I;16") else (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_meta_round_trip_keeps_seed_format() -> None:
    frame = pd.DataFrame({"file": ["a.png", "b.png"], "class": ["x", "y"], "label": [0, 1], "caption": ["c1", "c2"]})
    data = write_meta(frame)
    assert data.decode().splitlines()[0] == ",file,class,label,caption"
    parsed = parse_meta(data)
    assert parsed.to_dict("list") == frame.to_dict("list")


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (b"", "empty"),
        (b",file,class\n0,a.png,x\n", r"lacks column\(s\) label"),
        (b",file,class,label\n0,a.png,x,zero\n", "must hold integers"),
    ],
)
def test_meta_unusable_files_are_clear_errors(csv: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_meta(csv)


def test_check_rows_reports_duplicates_mismatch_and_traversal() -> None:
    frame = parse_meta(
        b",file,class,label\n0,a.png,x,0\n1,a.png,x,0\n2,b.png,x,0\n3,c.png,x,5\n4,../../etc/passwd,y,1\n5,d.png,y,1\n"
    )
    report = DataReport()
    kept = check_rows(frame, report)
    assert kept["file"].tolist() == ["a.png", "b.png", "d.png"]
    reasons = dict(report.dropped)
    assert reasons["a.png"] == "duplicate file entry"
    assert "disagrees with class 'x'" in reasons["c.png"]
    assert "escapes" in reasons["../../etc/passwd"]


def test_labels_shared_by_two_classes_stop_the_run() -> None:
    frame = parse_meta(b",file,class,label\n0,a.png,x,0\n1,b.png,y,0\n")
    with pytest.raises(DataError, match="more than one class"):
        check_rows(frame, DataReport())


def test_validate_category_drops_missing_and_corrupt_images(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    category = registry.get("tiny")
    meta = parse_meta(store.get_bytes(f"{category.data_prefix}/meta.csv"))
    first, second = meta["file"].iloc[0], meta["file"].iloc[1]
    store.put_bytes(f"{category.data_prefix}/images/{first}", b"\xff\xd8\xff\xe0 not really a jpeg")
    (home.objects_dir / category.data_prefix / "images" / second).unlink()
    frame, report = validate_category(category, store, home.home / "cache", show_progress=False)
    reasons = dict(report.dropped)
    assert "unreadable image" in reasons[first]
    assert reasons[second] == "image file missing"
    assert len(frame) == len(meta) - 2 == report.kept


def test_split_is_class_disjoint_seeded_and_holds_out_images() -> None:
    frame = pd.DataFrame(
        {
            "file": [f"{c}{i}" for c in "abcdefghij" for i in range(10)],
            "class": [c for c in "abcdefghij" for _ in range(10)],
            "label": 0,
        }
    )
    first = split_by_class(frame, split=0.6, holdout=0.2, seed=3)
    again = split_by_class(frame, split=0.6, holdout=0.2, seed=3)
    assert first["split"].tolist() == again["split"].tolist()
    test_classes = set(first.loc[first["split"] == "test", "class"])
    train_classes = set(first.loc[first["split"] != "test", "class"])
    assert len(train_classes) == 6 and len(test_classes) == 4 and not test_classes & train_classes
    assert (first.groupby("class")["split"].apply(lambda s: (s == "heldout").sum()).loc[list(train_classes)] == 2).all()


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
