"""Run an adapter's candidates into a category: load, check, stage, find duplicates, filter, write.

Images are staged in a local folder first: duplicates and too-small classes are only known once
every image is loaded, and the store must not keep images that the meta CSV does not list.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visearch.categories import Category
from visearch.data.adapters.common import Candidate, class_labels
from visearch.data.dedupe import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_COSINE,
    DuplicateReport,
    ImageHashes,
    find_duplicates,
    hash_image,
)
from visearch.data.ingest import write_category
from visearch.data.meta import DataReport
from visearch.errors import DataError, VisearchError
from visearch.storage import ObjectStore

Embedder = Callable[[list[Path]], np.ndarray]
REPORT_NAME = "prepare_report.json"


@dataclass
class PrepareOptions:
    """Knobs common to every dataset.

    Attributes:
        limit: Stop after this many images were loaded successfully (quick trial runs).
        per_class: Load at most this many images per class.
        min_per_class: Drop classes left with fewer images (after --dedupe).
        dedupe: Drop duplicates instead of only reporting them.
        max_distance: Hamming distance of perceptual hashes for near duplicates (None: exact only).
        min_cosine: Cosine similarity of embedding duplicates (only with an embedder).
    """

    limit: int | None = None
    per_class: int | None = None
    min_per_class: int = 1
    dedupe: bool = False
    max_distance: int | None = DEFAULT_MAX_DISTANCE
    min_cosine: float = DEFAULT_MIN_COSINE
    show_progress: bool = True


@dataclass
class PrepareReport(DataReport):
    """DataReport plus the dataset, the duplicate report and the class count."""

    dataset: str = ""
    classes: int = 0
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)

    def summary(self) -> str:
        """Human-readable report: counts, reasons, the first dropped files and the duplicates."""
        lines = [
            f"{self.dataset}: {self.kept} images kept in {self.classes} classes, "
            f"{len(self.dropped)} dropped (of {self.total} considered)"
        ]
        lines += [f"  {count:>7}  {reason}" for reason, count in self.reasons().most_common()]
        lines += [f"  dropped {file}: {reason}" for file, reason in self.dropped[:10]]
        if len(self.dropped) > 10:
            lines.append(f"  ... {len(self.dropped) - 10} more in {REPORT_NAME}")
        lines.append(self.duplicates.summary(limit=10))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the dataset, class count, drop reasons, the base report and the duplicates."""
        return {
            "dataset": self.dataset,
            "classes": self.classes,
            **super().to_dict(),
            "duplicates": self.duplicates.to_dict(),
        }


@dataclass
class _Staged:
    file: str
    cls: str
    captions: dict[str, object]
    hashes: ImageHashes


def prepare_category(
    store: ObjectStore,
    category: Category,
    candidates: Iterable[Candidate],
    report: PrepareReport,
    *,
    options: PrepareOptions | None = None,
    embedder: Embedder | None = None,
    staging_root: Path | None = None,
    labels: Mapping[str, int] | None = None,
) -> PrepareReport:
    """Load every candidate, report and drop bad ones and duplicates, write images + meta CSV.

    Args:
        store: Where the category's data goes.
        category: The target category (its data prefix and meta name).
        candidates: From a dataset adapter's ``scan``; drops found while scanning are already in ``report``.
        report: Filled in and returned.
        options: Limits, duplicate handling, class size.
        embedder: Optional ``paths -> L2-normalised vectors`` for embedding-distance duplicates.
        staging_root: Where the temporary staging folder goes (default: the system's temp folder);
            it needs room for the whole prepared dataset and is removed at the end.
        labels: Fixed class → label map (e.g. a dataset's own label ids); default: sorted class order.
    """
    options = options or PrepareOptions()
    candidates = list(candidates)
    if staging_root is not None:
        staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"prepare-{category.name}-", dir=staging_root))
    try:
        staged = _load_all(candidates, report, staging, options)
        report.total = len(report.dropped) + len(staged)
        _find_duplicates(staged, report, staging, options, embedder)
        staged = _drop_small_classes(staged, report, options.min_per_class)
        if not staged:
            raise DataError(f"{report.dataset}: no usable images ({len(report.dropped)} dropped)\n{report.summary()}")
        labels = labels or class_labels([item.cls for item in staged])
        unlabelled = sorted({item.cls for item in staged} - set(labels))
        if unlabelled:
            raise DataError(f"{report.dataset}: no label for class(es) {unlabelled[:5]}")
        rows = (
            (item.file, item.cls, labels[item.cls], (staging / item.file).read_bytes(), item.captions)
            for item in staged
        )
        report.kept = write_category(store, category, rows, total=len(staged), show_progress=options.show_progress)
        report.classes = len({item.cls for item in staged})
        store.put_bytes(f"{category.data_prefix}/{REPORT_NAME}", json.dumps(report.to_dict(), indent=1).encode())
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load_all(
    candidates: list[Candidate], report: PrepareReport, staging: Path, options: PrepareOptions
) -> list[_Staged]:
    staged: list[_Staged] = []
    seen: set[str] = set()
    per_class: Counter[str] = Counter()
    progress = tqdm(
        candidates, desc=f"reading {report.dataset}", unit="img", disable=None if options.show_progress else True
    )
    for candidate in progress:
        if options.limit is not None and len(staged) >= options.limit:
            break
        if options.per_class is not None and per_class[candidate.cls] >= options.per_class:
            continue
        if candidate.file in seen:
            report.drop(candidate.file, "duplicate file name: two sources map to the same file")
            continue
        try:
            loaded = candidate.load()
            hashes = hash_image(loaded.image)
        except VisearchError as exc:
            report.drop(candidate.source or candidate.file, str(exc))
            continue
        except (OSError, ValueError, SyntaxError) as exc:  # decoder errors that slipped past the checks
            report.drop(candidate.source or candidate.file, f"unreadable image: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one odd file must not end a run over 10^5 files
            report.drop(candidate.source or candidate.file, f"unexpected error: {type(exc).__name__}: {exc}")
            continue
        target = staging / candidate.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(loaded.data)
        seen.add(candidate.file)
        per_class[candidate.cls] += 1
        staged.append(_Staged(candidate.file, candidate.cls, dict(candidate.captions), hashes))
    progress.close()
    return staged


def _find_duplicates(
    staged: list[_Staged], report: PrepareReport, staging: Path, options: PrepareOptions, embedder: Embedder | None
) -> None:
    vectors = embedder([staging / item.file for item in staged]) if embedder and staged else None
    report.duplicates = find_duplicates(
        [item.file for item in staged],
        [item.hashes for item in staged],
        max_distance=options.max_distance,
        vectors=vectors,
        min_cosine=options.min_cosine,
    )
    if not options.dedupe:
        return
    drop = report.duplicates.files()
    for duplicate in report.duplicates.duplicates:
        report.drop(duplicate.file, f"duplicate: {duplicate.kind} copy of {duplicate.of}")
    staged[:] = [item for item in staged if item.file not in drop]


def _drop_small_classes(staged: list[_Staged], report: PrepareReport, min_per_class: int) -> list[_Staged]:
    counts = Counter(item.cls for item in staged)
    small = {cls for cls, count in counts.items() if count < min_per_class}
    for item in staged:
        if item.cls in small:
            report.drop(item.file, f"class too small: {item.cls!r} has {counts[item.cls]} < {min_per_class} images")
    return [item for item in staged if item.cls not in small]
