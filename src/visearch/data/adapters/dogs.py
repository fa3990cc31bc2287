"""Stanford Dogs: ``Images/n02085620-Chihuahua/n02085620_10074.jpg`` + ``Annotation/<same>/<stem>`` (VOC XML).

Class = breed (the folder name after the WordNet id). With ``crop``, every annotated dog box
becomes its own image (``<stem>_<n>.jpg``); without it, whole images are kept and the
annotations are not needed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from visearch.data.adapters.common import (
    Candidate,
    annotated_boxes,
    box_loader,
    file_loader,
    find_dir,
    read_rgb,
    require_dir,
    safe_file,
)
from visearch.data.meta import DataReport
from visearch.errors import DataError


def breed_name(folder: str) -> str:
    """``n02085782-Japanese_spaniel`` → ``Japanese spaniel``."""
    _, _, breed = folder.partition("-")
    return (breed or folder).replace("_", " ")


def scan(source: Path, report: DataReport, *, crop: bool = False) -> list[Candidate]:
    """Candidates for every image (or, with ``crop``, every annotated box), sorted by breed and file."""
    require_dir(source, "Stanford Dogs source folder")
    images = find_dir(source, "Images")
    if images is None:
        raise DataError(f"{source} has no Images/ folder (Stanford Dogs layout: Images/<wnid>-<breed>/*.jpg)")
    annotations = find_dir(source, "Annotation")
    if crop and annotations is None:
        raise DataError(f"{source} has no Annotation/ folder, needed by --crop")
    read = lru_cache(maxsize=2)(read_rgb)  # every box of a photo decodes it once
    candidates: list[Candidate] = []
    for folder in sorted(path for path in images.iterdir() if path.is_dir()):
        breed = breed_name(folder.name)
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            relative = f"{folder.name}/{path.name}"
            captions = {"breed": breed, "wordnet_id": folder.name.partition("-")[0]}
            if not crop:
                file = safe_file(breed, path.stem) + ".jpg"
                candidates.append(Candidate(file, breed, captions, file_loader(path), relative))
                continue
            assert annotations is not None
            for number, obj in enumerate(annotated_boxes(annotations / folder.name / path.stem, relative, report)):
                file = safe_file(breed, f"{path.stem}_{number}") + ".jpg"
                load = box_loader(read, path, obj.box)
                candidates.append(Candidate(file, breed, captions, load, f"{relative} box {number}"))
    return candidates
