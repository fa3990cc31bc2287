"""IMDB-WIKI: ``imdb_crop/NN/nm..._rm..._<dob>_<taken>.jpg`` + ``imdb_crop/imdb.mat`` (the MATLAB struct).

The seed's rules keep only images stored as RGB and larger than 30 kB (small crops are often
wrongly labelled, another person of the photo); the mat file adds face scores: images without a
detected face, with a weak face, or with a second face (whose name is ambiguous) are dropped.
Class = person; captions = name, gender, birth year. ``wiki_crop`` + ``wiki.mat`` work the same.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from visearch.data.adapters.common import Candidate, file_loader, find_dir, require_dir, safe_file
from visearch.data.meta import DataReport
from visearch.errors import DataError

FOLDERS = (("imdb_crop", "imdb"), ("wiki_crop", "wiki"))
FIELDS = ("full_path", "dob", "gender", "name", "face_score", "second_face_score")
IMDB_ID = re.compile(r"^(nm\d+)_")


@dataclass
class CelebrityRules:
    """The filters; defaults follow the seed (RGB, > 30 kB) and common IMDB-WIKI practice (face score)."""

    min_bytes: int = 30_000
    min_face_score: float = 1.0
    drop_second_face: bool = True


def locate(source: Path) -> tuple[Path, Path, str]:
    """The crop folder, its mat file and the struct name (``imdb`` or ``wiki``)."""
    require_dir(source, "IMDB-WIKI source folder")
    for folder_name, struct in FOLDERS:
        folder = find_dir(source, folder_name, depth=1)
        if folder is None:
            continue
        for mat in (folder / f"{struct}.mat", folder.parent / f"{struct}.mat"):
            if mat.is_file():
                return folder, mat, struct
        raise DataError(f"metadata file {struct}.mat not found in {folder} (IMDB-WIKI ships it inside {folder_name}/)")
    raise DataError(f"{source} has no imdb_crop/ or wiki_crop/ folder (IMDB-WIKI layout)")


def read_mat(path: Path, struct: str) -> dict[str, np.ndarray]:
    """The per-image columns of the struct as flat arrays (cell arrays become lists of str)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
        record = mat[struct][0, 0]
        columns = {name: record[name].ravel() for name in FIELDS}
    except (KeyError, ValueError, IndexError, OSError, NotImplementedError) as exc:
        raise DataError(f"{path} is not an IMDB-WIKI metadata file (struct {struct!r} with {FIELDS}): {exc}") from exc
    for name in ("full_path", "name"):
        columns[name] = np.array([_text(cell) for cell in columns[name]], dtype=object)
    lengths = {len(column) for column in columns.values()}
    if len(lengths) != 1:
        raise DataError(f"{path}: struct {struct!r} has columns of different lengths")
    return columns


def _text(cell: object) -> str:
    array = np.asarray(cell).ravel()
    return str(array[0]).strip() if array.size else ""


def birth_year(dob: float) -> str:
    """MATLAB serial date (days since year 0) → year; empty when unknown."""
    if not math.isfinite(dob) or dob < 367:
        return ""
    return str((datetime.fromordinal(int(dob)) - timedelta(days=366)).year)


def gender_name(value: float) -> str:
    """The mat file's gender value as ``male`` or ``female``; ``""`` when unknown."""
    return {1.0: "male", 0.0: "female"}.get(float(value), "") if math.isfinite(value) else ""


def scan(source: Path, report: DataReport, *, rules: CelebrityRules | None = None) -> list[Candidate]:
    """Candidates that pass the metadata rules (face scores, name); size and RGB are checked on load."""
    rules = rules or CelebrityRules()
    folder, mat, struct = locate(source)
    columns = read_mat(mat, struct)
    ids_by_name: dict[str, set[str]] = defaultdict(set)
    for path, name in zip(columns["full_path"], columns["name"], strict=True):
        match = IMDB_ID.match(Path(path).name)
        ids_by_name[name].add(match.group(1) if match else "")
    candidates = []
    for i in np.argsort(columns["full_path"], kind="stable"):
        relative, name = columns["full_path"][i], columns["name"][i]
        face, second = float(columns["face_score"][i]), float(columns["second_face_score"][i])
        if not relative or not name:
            report.drop(relative or f"row {i}", "no name: the mat row lacks a name or path")
        elif not math.isfinite(face):
            report.drop(relative, "no face: the face detector found none")
        elif face < rules.min_face_score:
            report.drop(relative, f"face score too low: {face:.2f} < {rules.min_face_score}")
        elif rules.drop_second_face and math.isfinite(second):
            report.drop(relative, f"second face: another face (score {second:.2f}) makes the name ambiguous")
        else:
            match = IMDB_ID.match(Path(relative).name)
            person_id = match.group(1) if match else ""
            cls = name if len(ids_by_name[name]) == 1 else f"{name} ({person_id})"  # namesakes stay apart
            captions = {
                "name": name,
                "gender": gender_name(float(columns["gender"][i])),
                "birth_year": birth_year(float(columns["dob"][i])),
            }
            load = file_loader(folder / relative, require_rgb=True, min_bytes=rules.min_bytes)
            file = safe_file(*Path(relative).with_suffix("").parts) + ".jpg"
            candidates.append(Candidate(file, cls, captions, load, relative))
    return candidates
