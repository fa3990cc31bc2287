"""A folder already in the category layout (``meta.csv`` + ``images/``), or one folder per class.

With ``meta.csv`` (the seed's own format), rows are validated like every reader does (columns,
duplicate files, label/class agreement) and keep their labels. Without it, the folder is read as
torchvision's ``ImageFolder`` layout (``<class>/<image>``, any depth below the class folder, as
Kaggle's class-per-folder sets ship): the class is the folder name, labels follow the sorted class
names, and there are no caption columns. Either way images are decoded, checked and hashed like
any dataset's, and every file left out is reported with its reason.
"""

from __future__ import annotations

from pathlib import Path

from visearch.data.adapters.common import Candidate, file_loader, require_dir, safe_file
from visearch.data.meta import REQUIRED_COLUMNS, DataReport, check_rows, parse_meta
from visearch.errors import DataError

# torchvision's IMG_EXTENSIONS that Pillow decodes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan(source: Path, report: DataReport, *, meta_name: str = "meta.csv") -> tuple[list[Candidate], dict[str, int]]:
    """Candidates and the class → label map: of the meta CSV, or ``{}`` (sorted order) for class folders."""
    require_dir(source, "category folder")
    meta_path = source / meta_name
    if meta_path.is_file():
        return scan_meta(source, meta_path, report)
    root = class_root(source)
    if root is None:
        raise DataError(
            f"{meta_path} not found and {source} holds no class folders: a category folder needs "
            f"{meta_name} + images/, or one folder per class (<class>/<image>)"
        )
    return scan_classes(root, report), {}


def scan_meta(source: Path, meta_path: Path, report: DataReport) -> tuple[list[Candidate], dict[str, int]]:
    """One candidate per valid meta CSV row (bad rows go to ``report``) and the CSV's class → label map."""
    rows = DataReport()
    frame = check_rows(parse_meta(meta_path.read_bytes(), str(meta_path)), rows)
    report.dropped.extend(rows.dropped)
    captions = [column for column in frame.columns if column not in REQUIRED_COLUMNS]
    candidates = [
        Candidate(
            str(row["file"]),
            str(row["class"]),
            {column: row[column] for column in captions},
            file_loader(source / "images" / str(row["file"]), keep_format=True),
            f"images/{row['file']}",
        )
        for _, row in frame.iterrows()
    ]
    labels = dict(zip(frame["class"].astype(str), frame["label"].astype(int), strict=True))
    return candidates, labels


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def class_root(source: Path) -> Path | None:
    """The folder whose sub-folders are the classes: ``source``, or below it while downloads nest one folder in another."""
    root = source
    while True:
        folders = _visible_dirs(root)
        files = [path for path in root.iterdir() if path.is_file() and not path.name.startswith(".")]
        if len(folders) != 1 or files or not _visible_dirs(folders[0]):
            return root if folders else None
        if any(path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES for path in folders[0].iterdir()):
            return root  # a one-class tree whose class folder also holds sub-folders
        root = folders[0]  # e.g. "Garbage classification/Garbage classification/<class>/*.jpg"


def scan_classes(root: Path, report: DataReport) -> list[Candidate]:
    """One candidate per image file under a class folder, sorted by class then path; other files are reported."""
    candidates = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue  # .DS_Store, .ipynb_checkpoints/: a file system's, not the dataset's
        if len(relative.parts) < 2:
            report.drop(str(relative), "not in a class folder: expected <class>/<image>")
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            report.drop(str(relative), f"not an image file: suffix {path.suffix or '(none)'!r}")
        else:
            cls = relative.parts[0]
            file = safe_file(*relative.parts)
            candidates.append(Candidate(file, cls, {}, file_loader(path, keep_format=True), str(relative)))
    candidates.sort(key=lambda candidate: (candidate.cls, candidate.file))
    return candidates
