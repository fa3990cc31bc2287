"""Dataset adapters on small fixtures in each publisher's native layout (real JPEGs, VOC XML, .mat, CSV)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.helpers import jpeg, photo
from tests.unit.data.datasets import make_dogs, make_fashion, make_imdb, make_logodet, make_zappos, voc_xml, write
from visearch.categories import Category
from visearch.data.adapters import celebrities, dogs, fashion, logos, shoes
from visearch.data.adapters.common import crop_box, parse_voc, safe_file
from visearch.data.adapters.runner import PrepareOptions, PrepareReport, prepare_category
from visearch.errors import DataError
from visearch.storage import LocalStore


def run(tmp_path: Path, name: str, candidates: list, report: PrepareReport, **options: object):
    store = LocalStore(tmp_path / "objects")
    category = Category(name=name, title=name)
    staging_root = options.pop("staging_root", None)
    options = {"min_per_class": 2, "show_progress": False} | options  # the CLI's default class size
    prepare_category(store, category, candidates, report, options=PrepareOptions(**options), staging_root=staging_root)
    meta = pd.read_csv(tmp_path / "objects" / "datasets" / name / "meta.csv", index_col=0)
    return meta, tmp_path / "objects" / "datasets" / name / "images"


# --- shared helpers ------------------------------------------------------------------------------
def test_safe_file_and_voc_crop(tmp_path: Path) -> None:
    assert safe_file("Shoes", "Sneakers and Athletic Shoes", "A. Testoni", "7965307.5291") == (
        "Shoes/Sneakers_and_Athletic_Shoes/A._Testoni/7965307.5291"
    )
    assert ".." not in safe_file("x..y", "..")
    xml = write(tmp_path / "a.xml", voc_xml("a.jpg", (96, 96), [("dog", (11, 21, 60, 80))]).encode())
    annotation = parse_voc(xml)
    assert annotation.size == (96, 96) and annotation.objects[0].box == (11, 21, 60, 80)
    assert crop_box(photo(0), (11, 21, 60, 80)).size == (50, 60)  # 1-based inclusive corners
    assert crop_box(photo(0), (50, 50, 120, 99)).size == (47, 47)  # overshoot is clipped


# --- shoes: UT Zappos50K --------------------------------------------------------------------------
def test_shoes(tmp_path: Path) -> None:
    source = make_zappos(tmp_path / "zappos")
    report = PrepareReport(dataset="shoes")
    meta, images = run(tmp_path, "shoes", shoes.scan(source, report), report)
    assert len(meta) == 13 and list(meta.columns[:3]) == ["file", "class", "label"]
    assert set(meta["class"]) == {"Shoes - Sneakers and Athletic Shoes", "Boots - Ankle", "Sandals - Flat"}
    first = meta[meta["file"] == "Shoes/Sneakers_and_Athletic_Shoes/Nike/7965300.5291.jpg"].iloc[0]
    assert (first["brand"], first["gender"], first["material"]) == ("Nike", "Men", "Mesh")
    assert meta.groupby("class")["label"].nunique().eq(1).all() and meta["label"].nunique() == 3
    assert all((images / file).is_file() for file in meta["file"])
    reasons = dict(report.dropped)
    assert reasons["Boots/Ankle/A. Testoni/broken.jpg"].startswith("unreadable image")
    assert reasons["Boots/Thumbs.db"].startswith("not in the layout")
    pairs = {(d.file.split("/")[-1], d.of.split("/")[-1], d.kind) for d in report.duplicates.duplicates}
    assert pairs == {("copy.jpg", "7965306.5291.jpg", "exact")}


def test_shoes_dedupe_and_limit(tmp_path: Path) -> None:
    source = make_zappos(tmp_path / "zappos")
    report = PrepareReport(dataset="shoes")
    meta, _ = run(tmp_path, "shoes", shoes.scan(source, report), report, dedupe=True)
    assert "Boots/Ankle/A._Testoni/copy.jpg" not in set(meta["file"]) and len(meta) == 12
    assert any(reason.startswith("duplicate: exact copy of") for _, reason in report.dropped)
    report = PrepareReport(dataset="shoes")
    meta, _ = run(tmp_path / "b", "shoes", shoes.scan(source, report), report, limit=4, per_class=2)
    assert len(meta) == 4 and meta["class"].value_counts().max() == 2


def test_missing_source_is_one_clear_error(tmp_path: Path) -> None:
    for scan in (shoes.scan, dogs.scan, logos.scan, fashion.scan, celebrities.scan):
        with pytest.raises(DataError, match="not found"):
            scan(tmp_path / "nowhere", PrepareReport())
    with pytest.raises(DataError, match="ut-zap50k-images-square"):
        shoes.scan(tmp_path, PrepareReport())


# --- dogs: Stanford Dogs --------------------------------------------------------------------------
def test_dogs_whole_images(tmp_path: Path) -> None:
    source = make_dogs(tmp_path / "stanford")
    report = PrepareReport(dataset="dogs")
    meta, images = run(tmp_path, "dogs", dogs.scan(source, report), report)
    assert len(meta) == 6 and set(meta["class"]) == {"Chihuahua", "Japanese spaniel"}
    assert Image.open(images / meta["file"][0]).size == (120, 120)
    assert not report.dropped and meta["wordnet_id"].str.startswith("n0208").all()


def test_dogs_crops_and_malformed_annotations(tmp_path: Path) -> None:
    source = make_dogs(tmp_path / "stanford")
    report = PrepareReport(dataset="dogs")
    meta, images = run(tmp_path, "dogs", dogs.scan(source, report, crop=True), report, min_per_class=1)
    assert sorted(meta["file"]) == [
        "Chihuahua/n02085620_1000_0.jpg",
        "Chihuahua/n02085620_1000_1.jpg",
        "Japanese_spaniel/n02085782_1000_0.jpg",
        "Japanese_spaniel/n02085782_1000_1.jpg",
        "Japanese_spaniel/n02085782_1001_0.jpg",
    ]
    assert Image.open(images / "Chihuahua/n02085620_1000_0.jpg").size == (81, 91)
    assert Image.open(images / "Chihuahua/n02085620_1000_1.jpg").size == (60, 56)
    reasons = dict(report.dropped)
    assert reasons["n02085620-Chihuahua/n02085620_1001.jpg"].startswith("bad annotation XML")
    assert reasons["n02085620-Chihuahua/n02085620_1002.jpg box 0"].startswith("box outside the image")
    assert reasons["n02085782-Japanese_spaniel/n02085782_1002.jpg"].startswith("annotation missing")


# --- logos: LogoDet-3K ----------------------------------------------------------------------------
def test_logos_every_box_is_an_image(tmp_path: Path) -> None:
    source = make_logodet(tmp_path / "ld")
    report = PrepareReport(dataset="logos")
    meta, images = run(tmp_path, "logos", logos.scan(source, report), report)
    assert len(meta) == 12 and meta.groupby("class").size().to_dict() == {"Coca-Cola": 4, "Pepsi": 4, "adidas": 4}
    assert set(meta.loc[meta["class"] == "adidas", "category"]) == {"Clothes"}
    assert Image.open(images / "Food/Coca-Cola/1_0.jpg").size == (66, 56)
    assert Image.open(images / "Food/Coca-Cola/1_1.jpg").size == (71, 61)
    reasons = dict(report.dropped)
    assert reasons["Food/Pepsi/3.jpg"].startswith("annotation missing")
    assert reasons["Clothes/adidas/3.jpg box 0"].startswith("box too small")  # clipped to 6x6
    assert reasons["Clothes/adidas/3.jpg box 1"].startswith("empty box:")
    assert not report.duplicates.duplicates
    (tmp_path / "ld" / "LogoDet-3K").rename(tmp_path / "inner")
    (tmp_path / "ld" / "LogoDet-3K").mkdir()
    (tmp_path / "inner").rename(tmp_path / "ld" / "LogoDet-3K" / "LogoDet-3K")  # the Kaggle zip's nesting
    assert (tmp_path / "ld" / "LogoDet-3K" / "LogoDet-3K" / "Food" / "Pepsi").is_dir()
    assert len(logos.scan(tmp_path / "ld", PrepareReport())) == 14


# --- celebrities: IMDB-WIKI -----------------------------------------------------------------------
def test_celebrities_rules_and_captions(tmp_path: Path) -> None:
    source = make_imdb(tmp_path / "imdb")
    sizes = {p.name[:16]: p.stat().st_size for p in (source / "imdb_crop").rglob("*.jpg")}
    assert sizes["nm0000002_rm1004"] < 30_000 < min(size for name, size in sizes.items() if name[-4:] != "1004")
    report = PrepareReport(dataset="celebrities")
    meta, images = run(tmp_path, "celebrities", celebrities.scan(source, report), report)
    assert meta.groupby("class").size().to_dict() == {"Fred Astaire (nm0000001)": 2, "Lauren Bacall": 2}
    row = meta[meta["class"] == "Lauren Bacall"].iloc[0]
    assert (row["name"], row["gender"], str(row["birth_year"])) == ("Lauren Bacall", "female", "1924")
    assert set(meta.loc[meta["class"].str.startswith("Fred"), "gender"]) == {"male"}
    reasons = [reason.split(":")[0] for _, reason in sorted(report.dropped)]
    assert sorted(reasons) == sorted(
        [
            "file too small",
            "not RGB",
            "no face",
            "face score too low",
            "second face",
            "unreadable image",
            "class too small",
        ]
    )


def test_celebrities_missing_mat_is_one_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "imdb_crop" / "01" / "x.jpg", jpeg(photo(0)))
    with pytest.raises(DataError, match="imdb.mat not found"):
        celebrities.scan(tmp_path, PrepareReport())
    write(tmp_path / "imdb_crop" / "imdb.mat", b"MATLAB 5.0 MAT-file, but not really")
    with pytest.raises(DataError, match="not an IMDB-WIKI metadata file"):
        celebrities.scan(tmp_path, PrepareReport())


# --- fashion: Kaggle fashion product images --------------------------------------------------------
def test_fashion(tmp_path: Path) -> None:
    source = make_fashion(tmp_path / "kaggle")
    report = PrepareReport(dataset="fashion")
    meta, _ = run(tmp_path, "fashion", fashion.scan(source, report), report)
    assert meta.groupby("class").size().to_dict() == {"Jeans": 2, "Shirts": 4}
    assert list(meta.columns) == ["file", "class", "label", "gender", "colour", "season", "usage", "name"]
    assert meta.set_index("file").loc["30805.jpg", "name"] == "Fabindia Men Striped Green Shirt, Kurta, Set"
    reasons = dict(report.dropped)
    assert reasons["styles.csv line 9"].startswith("malformed styles.csv line")
    assert reasons["images/29114.jpg"].startswith("image missing")
    assert reasons["images/30039.jpg"].startswith("unreadable image")
    assert reasons["59263.jpg"].startswith("class too small")
    (source / "fashion-dataset" / "styles.csv").unlink()
    with pytest.raises(DataError, match="styles.csv not found"):
        fashion.scan(source, PrepareReport())


# --- the runner -----------------------------------------------------------------------------------
def test_runner_survives_any_file_and_cleans_its_staging(tmp_path: Path) -> None:
    from visearch.data.adapters.common import Candidate, Loaded

    def good(index: int) -> Callable[[], Loaded]:
        return lambda: Loaded(photo(index, 64), jpeg(photo(index, 64)))

    def boom() -> Loaded:
        raise RuntimeError("decoder exploded")

    candidates = [Candidate(f"c{i}/{n}.jpg", f"c{i}", {"n": n}, good(i * 3 + n)) for i in range(2) for n in range(3)]
    candidates += [Candidate("c0/bad.jpg", "c0", {"n": 9}, boom, "raw/bad.jpg"), candidates[0]]
    report = PrepareReport(dataset="t")
    meta, _ = run(tmp_path, "t", candidates, report, staging_root=tmp_path / "staging")
    assert len(meta) == 6 and meta["label"].tolist() == [0, 0, 0, 1, 1, 1]
    assert dict(report.dropped) == {
        "raw/bad.jpg": "unexpected error: RuntimeError: decoder exploded",
        "c0/0.jpg": "duplicate file name: two sources map to the same file",
    }
    assert report.reasons() == {"unexpected error": 1, "duplicate file name": 1}
    assert "t: 6 images kept in 2 classes, 2 dropped (of 8 considered)" in report.summary()
    assert list((tmp_path / "staging").iterdir()) == []
    with pytest.raises(DataError, match="no usable images"):
        run(tmp_path / "none", "t", candidates[-2:-1], PrepareReport(dataset="t"))


# --- fashion-mnist: IDX files ----------------------------------------------------------------------
def write_idx(folder: Path, split: str, labels: list[int]) -> None:
    """A tiny Fashion-MNIST split: 28x28 images whose pixels all equal their index (gzip IDX, as Debian ships)."""
    import gzip

    count = len(labels)
    pixels = bytes(index for index in range(count) for _ in range(28 * 28))
    head = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (count, 28, 28))
    (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + pixels))
    head = (0x0801).to_bytes(4, "big") + count.to_bytes(4, "big")
    (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(head + bytes(labels)))


def test_fashion_mnist_all_takes_both_splits_train_first(tmp_path: Path) -> None:
    from visearch.data.adapters import fashion_mnist

    write_idx(tmp_path, "train", [0, 1, 0])
    write_idx(tmp_path, "t10k", [1, 0])
    files = [item[0] for item in fashion_mnist.iter_images(tmp_path, split="all")]
    assert files == [
        "T-shirt-top/train-00000.png",
        "Trouser/train-00001.png",
        "T-shirt-top/train-00002.png",
        "Trouser/t10k-00000.png",
        "T-shirt-top/t10k-00001.png",
    ]
    # per_class counts over both splits: train fills the T-shirts, t10k tops up the trousers.
    capped = [item[0] for item in fashion_mnist.iter_images(tmp_path, split="all", per_class=2)]
    assert capped == files[:2] + ["T-shirt-top/train-00002.png", "Trouser/t10k-00000.png"]
    one = fashion_mnist.iter_images(tmp_path, split="all", per_class=1)
    assert [item[0] for item in one] == files[:2]
    with pytest.raises(DataError, match="unknown Fashion-MNIST split 'both'"):
        list(fashion_mnist.iter_images(tmp_path, split="both"))


# --- folder: class-per-folder tree (no CSV) ---------------------------------------------------------
def test_folder_of_class_folders(tmp_path: Path) -> None:
    """ImageFolder layout: classes from folder names, labels in sorted order, no caption columns, bad files reported."""
    from tests.unit.data.datasets import make_image_folder
    from visearch.data.adapters import folder

    source = make_image_folder(tmp_path / "download")
    write(source / "Garbage classification" / "Garbage classification" / "paper" / "paper1 copy.jpg", jpeg(photo(0)))
    report = PrepareReport(dataset="folder")
    candidates, labels = folder.scan(source, report)
    assert labels == {}  # the runner numbers the kept classes in sorted order
    meta, images = run(tmp_path, "waste", candidates, report, min_per_class=1)
    assert list(meta.columns) == ["file", "class", "label"]
    assert meta.groupby("class")["label"].first().to_dict() == {"cardboard": 0, "glass": 1, "paper": 2}
    assert meta.groupby("class").size().to_dict() == {"cardboard": 4, "glass": 4, "paper": 4}
    assert {"cardboard/boxes/flat_box.jpg", "glass/glass4.png"} <= set(meta["file"])
    assert Image.open(images / "glass/glass4.png").format == "PNG"  # stored as shipped
    assert dict(report.dropped) == {
        "paper/broken.jpg": dict(report.dropped)["paper/broken.jpg"],
        "paper/notes.txt": "not an image file: suffix '.txt'",
    }
    assert dict(report.dropped)["paper/broken.jpg"].startswith("unreadable image")
    pairs = {(d.file, d.of, d.kind) for d in report.duplicates.duplicates}
    assert pairs == {("paper/paper1_copy.jpg", "paper/paper1.jpg", "exact")}  # reported like the CSV path's
    with pytest.raises(DataError, match="no class folders"):
        folder.scan(write(tmp_path / "flat" / "a.jpg", jpeg(photo(0))).parent, PrepareReport())
