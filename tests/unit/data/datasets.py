"""Datasets in their publishers' layouts (UT Zappos50K, Stanford Dogs, devicon + simple-icons), built from real photos.

Each one also holds the faults the adapters must report: broken files, copies, stray files, bad annotations.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import jpeg, photo


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def voc_xml(filename: str, size: tuple[int, int], boxes: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in boxes
    )
    return (
        f"<annotation><folder>x</folder><filename>{filename}</filename><source><database>ImageNet</database>"
        f"</source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<segment>0</segment>{objects}</annotation>"
    )


def make_zappos(root: Path) -> Path:
    """UT Zappos50K's layout: 12 shoes in 3 classes, a broken JPEG, an exact copy, a stray Thumbs.db."""
    images = root / "ut-zap50k-images-square"
    layout = [
        ("Shoes", "Sneakers and Athletic Shoes", "Nike"),
        ("Shoes", "Sneakers and Athletic Shoes", "ASICS"),
        ("Boots", "Ankle", "A. Testoni"),
        ("Sandals", "Flat", "Teva"),
    ]
    index = 0
    for category, sub, brand in layout:
        for number in range(3):
            write(images / category / sub / brand / f"{7965300 + index}.{5291 + number}.jpg", jpeg(photo(index)))
            index += 1
    write(images / "Boots" / "Ankle" / "A. Testoni" / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    write(images / "Boots" / "Ankle" / "A. Testoni" / "copy.jpg", jpeg(photo(6)))  # same shoe, listed twice
    write(images / "Boots" / "Thumbs.db", b"junk")
    write(
        root / "ut-zap50k-data" / "meta-data.csv",
        b"CID,Category,SubCategory,HeelHeight,Insole,Closure,Gender,"
        b"Material,ToeStyle\n7965300-5291,Shoes,Sneakers and Athletic Shoes,Flat,Padded,Lace up,Men,Mesh,Round\n",
    )
    return root


def make_dogs(root: Path) -> Path:
    """Stanford Dogs' layout: two breeds, VOC boxes, a bad XML, a box outside its image, a missing annotation."""
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    for b, breed in enumerate(breeds):
        wnid = breed.split("-")[0]
        for number in range(3):
            stem = f"{wnid}_{1000 + number}"
            image = photo(b * 3 + number, size=120)
            write(root / "Images" / breed / f"{stem}.jpg", jpeg(image))
            boxes = [(breed, (10, 20, 90, 110))] + ([(breed, (60, 5, 119, 60))] if number == 0 else [])
            write(root / "Annotation" / breed / stem, voc_xml(stem, (120, 120), boxes).encode())
    chihuahua, spaniel = root / "Annotation" / breeds[0], root / "Annotation" / breeds[1]
    write(chihuahua / "n02085620_1001", b"<annotation><object><name>x</name>")  # bad XML
    write(chihuahua / "n02085620_1002", voc_xml("x", (120, 120), [("x", (200, 200, 260, 260))]).encode())
    (spaniel / "n02085782_1002").unlink()  # missing annotation
    return root


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
