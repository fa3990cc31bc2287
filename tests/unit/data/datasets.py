"""Datasets in their publishers' layouts, built from real photos.

UT Zappos50K, Stanford Dogs, LogoDet-3K, IMDB-WIKI, Kaggle fashion products, devicon + simple-icons.

Each one also holds the faults the adapters must report: broken files, copies, stray files, bad annotations.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

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


def make_logodet(root: Path) -> Path:
    base = root / "LogoDet-3K"
    brands = [("Food", "Coca-Cola"), ("Food", "Pepsi"), ("Clothes", "adidas")]
    for b, (category, brand) in enumerate(brands):
        for number in range(1, 3):
            image = photo(10 + b * 2 + number, size=160)
            write(base / category / brand / f"{number}.jpg", jpeg(image))
            boxes = [(brand, (5, 5, 70, 60)), (brand, (80, 90, 150, 150))]
            write(base / category / brand / f"{number}.xml", voc_xml(f"{number}.jpg", (160, 160), boxes).encode())
    write(base / "Food" / "Pepsi" / "3.jpg", jpeg(photo(30, size=160)))  # no XML next to it
    write(base / "Clothes" / "adidas" / "3.jpg", jpeg(photo(31, size=160)))
    write(
        base / "Clothes" / "adidas" / "3.xml",
        voc_xml("3.jpg", (160, 160), [("adidas", (155, 155, 400, 400)), ("adidas", (0, 0, 0, 0))]).encode(),
    )
    return root


def cell(values: list) -> np.ndarray:
    array = np.empty((1, len(values)), dtype=object)
    for i, value in enumerate(values):
        array[0, i] = np.array([value]) if isinstance(value, str) else np.array(value, dtype=float)
    return array


def portrait(index: int, size: int = 300) -> Image.Image:
    """A photo with film grain: its JPEG is well over the 30 kB rule (smooth crops compress below it)."""
    pixels = np.asarray(photo(index, size), dtype=np.int16)
    grain = np.random.default_rng(index).integers(-12, 13, pixels.shape)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def make_imdb(root: Path) -> Path:
    from scipy.io import savemat

    crop = root / "imdb_crop"
    big, small = 300, 60  # JPEG sizes over 60 kB and about 3 kB
    # (folder, person id, name, dob, gender, face score, second face score, image)
    rows = [
        ("01", "nm0000001", "Fred Astaire", date(1899, 5, 10), 1.0, 3.1, np.nan, jpeg(portrait(0, big), 95)),
        ("01", "nm0000001", "Fred Astaire", date(1899, 5, 10), 1.0, 2.5, np.nan, jpeg(portrait(1, big), 95)),
        ("02", "nm0000002", "Lauren Bacall", date(1924, 9, 16), 0.0, 4.2, np.nan, jpeg(portrait(2, big), 95)),
        ("02", "nm0000002", "Lauren Bacall", date(1924, 9, 16), 0.0, 1.8, np.nan, jpeg(portrait(3, big), 95)),
        ("02", "nm0000002", "Lauren Bacall", date(1924, 9, 16), 0.0, 2.2, np.nan, jpeg(photo(4, small), 95)),
        (
            "03",
            "nm0000003",
            "Brigitte Bardot",
            date(1934, 9, 28),
            0.0,
            2.9,
            np.nan,
            jpeg(portrait(5, big).convert("L"), 95),
        ),
        ("03", "nm0000003", "Brigitte Bardot", date(1934, 9, 28), 0.0, -np.inf, np.nan, jpeg(portrait(6, big), 95)),
        ("03", "nm0000003", "Brigitte Bardot", date(1934, 9, 28), 0.0, 0.4, np.nan, jpeg(portrait(7, big), 95)),
        ("04", "nm0000004", "John Belushi", date(1949, 1, 24), 1.0, 3.0, 2.7, jpeg(portrait(8, big), 95)),
        ("04", "nm0000004", "John Belushi", date(1949, 1, 24), 1.0, 3.0, np.nan, b"\xff\xd8\xff" + bytes(40_000)),
        ("05", "nm0000005", "Fred Astaire", date(1950, 1, 1), np.nan, 3.0, np.nan, jpeg(portrait(10, big), 95)),
    ]
    paths = []
    for n, (folder, person, _, born, _, _, _, image) in enumerate(rows):
        path = f"{folder}/{person}_rm{1000 + n}_{born.year}-{born.month}-{born.day}_2000.jpg"
        write(crop / path, image)
        paths.append(path)
    names = [row[2] for row in rows]
    imdb = {
        "dob": np.array([[row[3].toordinal() + 366 for row in rows]], dtype=float),
        "photo_taken": np.array([[2000] * len(rows)], dtype=np.uint16),
        "full_path": cell(paths),
        "gender": np.array([[row[4] for row in rows]]),
        "name": cell(names),
        "face_location": cell([[[1.0, 2.0, 30.0, 40.0]]] * len(rows)),
        "face_score": np.array([[row[5] for row in rows]]),
        "second_face_score": np.array([[row[6] for row in rows]]),
        "celeb_names": cell(sorted(set(names))),
        "celeb_id": np.array([[sorted(set(names)).index(name) + 1 for name in names]]),
    }
    savemat(str(crop / "imdb.mat"), {"imdb": imdb})
    return root


STYLES = """id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName
15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt
39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans
59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch
21379,Men,Apparel,Bottomwear,Jeans,Black,Fall,2011,Casual,Manchester United Men Solid Black Track Pants
53759,Men,Apparel,Topwear,Shirts,Grey,Summer,2012,Casual,Puma Men Grey T-shirt
1855,Men,Apparel,Topwear,Shirts,Grey,Summer,2011,Casual,Inkfruit Mens Chain Reaction T-shirt
30805,Men,Apparel,Topwear,Shirts,Green,Summer,2012,Ethnic,Fabindia Men Striped Green Shirt, Kurta, Set
26960,Women,Apparel,Topwear,Shirts,Purple,Summer,2012
29114,Men,Accessories,Socks,Socks,Navy Blue,Summer,2012,Casual,Puma Men Pack of 3 Socks
30039,Men,Accessories,Watches,Watches,Black,Winter,2016,Casual,Skagen Men Black Watch
"""


def make_fashion(root: Path) -> Path:
    base = root / "fashion-dataset"
    write(base / "styles.csv", STYLES.encode())
    for n, product in enumerate(["15970", "39386", "59263", "21379", "53759", "1855", "30805", "26960", "30039"]):
        write(base / "images" / f"{product}.jpg", jpeg(photo(n + 3, size=80)))
    write(base / "images" / "30039.jpg", (base / "images" / "30039.jpg").read_bytes()[:600])  # truncated
    return root  # 29114.jpg is missing, as a handful are in the real dataset


def make_image_folder(root: Path) -> Path:
    """A class-per-folder tree (torchvision ImageFolder; Kaggle's garbage set nests it twice): 3 classes, PNG and JPEG,
    a sub-folder inside a class, a broken image, a text file, a stray file beside the classes, a hidden file."""
    base = root / "Garbage classification" / "Garbage classification"
    for c, cls in enumerate(["paper", "glass", "cardboard"]):
        for number in range(3):
            write(base / cls / f"{cls}{number + 1}.jpg", jpeg(photo(c * 3 + number)))
    photo(20).save(write(base / "glass" / "glass4.png", b""), format="PNG")
    write(base / "cardboard" / "boxes" / "flat box.jpg", jpeg(photo(21)))  # any depth below the class folder
    write(base / "paper" / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    write(base / "paper" / "notes.txt", b"taken in 2019")
    write(base / "glass" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    (base / "metal").mkdir()  # an empty class folder
    return root
