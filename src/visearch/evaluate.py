"""Evaluation: retrieval metrics with PML's AccuracyCalculator (+ Recall@K), in-domain and class-disjoint.

Two questions, answered for every model (design.md "Evaluation: two questions"): held-out images
of the training classes searched against the training images (in-domain: what the index serves
today) and held-out classes searched among themselves (class-disjoint: what a new class gets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from visearch.data.checks import VALIDATION, VALIDATION_CLASS
from visearch.data.manifest import image_paths
from visearch.embed import embed_paths
from visearch.model import EmbeddingModel, load_model, resolve_device
from visearch.retrieval_grid import nearest
from visearch.settings import Settings
from visearch.storage import ObjectStore

RECALL_AT = (1, 5, 10)
METRICS = (
    "precision_at_1",
    "mean_average_precision_at_r",
    "r_precision",
    *(f"recall_at_{k}" for k in RECALL_AT),
)
PER_CLASS_METRICS = ("precision_at_1", "mean_average_precision_at_r")
PER_CLASS_LIMIT = 50  # classes with per-class metrics in a run (the largest): bounded for big categories


def _recall_at(knn_labels: torch.Tensor, query_labels: torch.Tensor, k: int) -> float:
    """Share of queries with at least one same-class image among the k nearest (Recall@K of SOP/CUB papers)."""
    hits = (knn_labels[:, :k] == query_labels.reshape(-1, 1)).any(dim=1)
    return float(hits.float().mean())


class RetrievalCalculator(AccuracyCalculator):
    """AccuracyCalculator with Recall@1/5/10 added the way PML documents custom metrics."""

    def calculate_recall_at_1(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        """Recall@1 of the k-nearest-neighbour labels."""
        return _recall_at(knn_labels, query_labels, 1)

    def calculate_recall_at_5(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        """Recall@5 of the k-nearest-neighbour labels."""
        return _recall_at(knn_labels, query_labels, 5)

    def calculate_recall_at_10(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        """Recall@10 of the k-nearest-neighbour labels."""
        return _recall_at(knn_labels, query_labels, 10)

    def requires_knn(self):  # type: ignore[no-untyped-def]
        """The base metrics' k-NN requirements plus the recall metrics."""
        return [*super().requires_knn(), *(f"recall_at_{k}" for k in RECALL_AT)]


def _calculator(
    include: tuple[str, ...], ref_labels: np.ndarray, self_search: bool, **options: Any
) -> RetrievalCalculator:
    """A calculator whose k covers R (the largest class) for MAP@R and reaches 10 for Recall@10."""
    _, counts = np.unique(ref_labels, return_counts=True)
    k = int(min(len(ref_labels) - (1 if self_search else 0), max(max(RECALL_AT), int(counts.max()))))
    return RetrievalCalculator(include=include, k=k, device=torch.device("cpu"), **options)


def _accuracy(
    include: tuple[str, ...],
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None,
    reference_labels: np.ndarray | None,
    **options: Any,
) -> dict[str, Any]:
    """PML's accuracy of ``include``; without a reference, each query searches the others."""
    self_search = reference is None
    ref = query if reference is None else reference
    ref_labels = query_labels if reference_labels is None else reference_labels
    return _calculator(include, ref_labels, self_search, **options).get_accuracy(  # type: ignore[no-any-return]
        torch.from_numpy(query),
        torch.from_numpy(query_labels),
        torch.from_numpy(ref),
        torch.from_numpy(ref_labels),
        ref_includes_query=self_search,
    )


def retrieval_metrics(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
) -> dict[str, float]:
    """P@1, MAP@R, R-precision, Recall@{1,5,10}. Without a reference, each query searches the others."""
    result = _accuracy(METRICS, query, query_labels, reference, reference_labels)
    return {name: round(float(result[name]), 4) for name in METRICS}


@dataclass(frozen=True)
class Question:
    """One of the two evaluation questions: the rows that ask, and the rows they search (None: each other)."""

    name: str
    queries: np.ndarray
    reference: np.ndarray | None


def questions(manifest: pd.DataFrame) -> list[Question]:
    """The evaluations the manifest's split allows, ``in_domain`` then ``class_disjoint`` (row positions).

    In-domain, the held-out images search every other image of the training classes, validation
    images included: the gallery the index serves, the same with or without validation. Validation
    images are never queries here, and the held-out classes' validation rows take no part.
    """
    labels = manifest["label"].to_numpy(dtype=np.int64)
    split = manifest["split"].to_numpy()
    heldout, test = split == "heldout", split == "test"
    found = []
    if heldout.any():
        gallery = np.flatnonzero((split == "train") | (split == VALIDATION))
        found.append(Question("in_domain", np.flatnonzero(heldout), gallery))
    if test.sum() > 1 and len(np.unique(labels[test])) > 1:
        found.append(Question("class_disjoint", np.flatnonzero(test), None))
    return found


def evaluate_vectors(vectors: np.ndarray, manifest: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The metrics of :func:`evaluate_model` for vectors already computed (one row per manifest row)."""
    labels = manifest["label"].to_numpy(dtype=np.int64)
    results: dict[str, dict[str, float]] = {}
    for question in questions(manifest):
        ref = question.reference
        results[question.name] = retrieval_metrics(
            vectors[question.queries],
            labels[question.queries],
            None if ref is None else vectors[ref],
            None if ref is None else labels[ref],
        )
    return results


def per_class_metrics(
    vectors: np.ndarray, manifest: pd.DataFrame, *, limit: int = PER_CLASS_LIMIT
) -> dict[str, dict[str, float]]:
    """MAP@R and P@1 of each class's queries: ``{class: {"map_at_r", "precision_at_1", "queries"}}``.

    A training class is scored in-domain, a held-out class class-disjoint (the two sets of classes
    are disjoint, so a class has one entry). Only the ``limit`` classes with the most queries are
    kept: a run's metric count stays bounded however many classes a category has.
    """
    labels = manifest["label"].to_numpy(dtype=np.int64)
    names = manifest["class"].astype(str).to_numpy()
    found: dict[str, dict[str, float]] = {}
    for question in questions(manifest):
        query_labels = labels[question.queries]
        ref = question.reference
        result = _accuracy(
            PER_CLASS_METRICS,
            vectors[question.queries],
            query_labels,
            None if ref is None else vectors[ref],
            None if ref is None else labels[ref],
            return_per_class=True,
        )
        # PML lists per-class values in the order of the sorted unique query labels.
        classes, counts = np.unique(query_labels, return_counts=True)
        for i, (label, count) in enumerate(zip(classes, counts, strict=True)):
            name = str(names[question.queries[query_labels == label][0]])
            found[name] = {
                "map_at_r": round(float(result["mean_average_precision_at_r"][i]), 4),
                "precision_at_1": round(float(result["precision_at_1"][i]), 4),
                "queries": int(count),
            }
    largest = sorted(found, key=lambda name: (-found[name]["queries"], name))[:limit]
    return {name: found[name] for name in sorted(largest)}


def class_confusion(vectors: np.ndarray, manifest: pd.DataFrame, *, k: int = 5) -> pd.DataFrame:
    """Which classes each class's queries retrieve in their top ``k``: a row per (question, query class, retrieved class).

    Columns ``question``, ``query_class``, ``retrieved_class``, ``count`` and ``share`` (of the
    query class's top-k results), largest first within a query class; the questions of the metrics.
    """
    names = manifest["class"].astype(str).to_numpy()
    rows = []
    for question in questions(manifest):
        ref = question.queries if question.reference is None else question.reference
        skip = np.arange(len(ref)) if question.reference is None else None  # a query never retrieves itself
        hits = nearest(vectors[question.queries], vectors[ref], k, skip=skip)
        for query, found in zip(question.queries, hits, strict=True):
            rows += [(question.name, names[query], names[ref[i]]) for i, _ in found]
    frame = pd.DataFrame(rows, columns=["question", "query_class", "retrieved_class"])
    counts = frame.value_counts().rename("count").reset_index()
    totals = counts.groupby(["question", "query_class"])["count"].transform("sum")
    counts["share"] = (counts["count"] / totals).round(4)
    order = ["question", "query_class", "count", "retrieved_class"]
    return counts.sort_values(order, ascending=[True, True, False, True]).reset_index(drop=True)


def evaluate_model(
    model: EmbeddingModel, manifest: pd.DataFrame, paths: list[Path], *, show_progress: bool = True
) -> dict[str, dict[str, float]]:
    """In-domain (held-out images vs training images of the same classes) and class-disjoint metrics."""
    vectors = embed_paths(model, paths, show_progress=show_progress, desc=f"evaluating {model.spec.version}")
    return evaluate_vectors(vectors, manifest)


def validation_metrics(
    model: EmbeddingModel, manifest: pd.DataFrame, paths: list[Path], *, device: torch.device | None = None
) -> dict[str, dict[str, float]]:
    """The metrics of :func:`evaluate_vectors` on the validation rows, which the final evaluation never sees.

    In-domain: ``validation`` images searched against the training images; class-disjoint: the
    ``validation_class`` images among themselves. Only the rows these need are embedded.
    """
    split = manifest["split"]
    needed = split.isin([VALIDATION, VALIDATION_CLASS])
    if (split == VALIDATION).any():
        needed |= split == "train"
    rows = manifest[needed].copy()
    rows["split"] = rows["split"].replace({VALIDATION: "heldout", VALIDATION_CLASS: "test"})
    chosen = [path for path, keep in zip(paths, needed, strict=True) if keep]
    vectors = embed_paths(model, chosen, show_progress=False, device=device)
    return evaluate_vectors(vectors, rows)


def evaluate_models(
    settings: Settings,
    store: ObjectStore,
    manifest: pd.DataFrame,
    models: dict[str, Path],
    *,
    show_progress: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of each named model directory, plus its vectors of every manifest row (for plots)."""
    paths = image_paths(store, settings, manifest["key"].tolist())
    device = resolve_device(settings.visearch_device)
    report: dict[str, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for name, model_dir in models.items():
        model = load_model(model_dir)
        vectors[name] = embed_paths(
            model, paths, show_progress=show_progress, desc=f"evaluating {name} {model.spec.version}", device=device
        )
        report[name] = {
            "version": model.spec.version,
            "images": len(manifest),
            **evaluate_vectors(vectors[name], manifest),
        }
    return report, vectors


def flatten_report(report: dict[str, Any]) -> dict[str, float]:
    """``{"tuned": {"in_domain": {"precision_at_1": .9}}}`` → ``{"tuned.in_domain.precision_at_1": .9}``."""
    flat: dict[str, float] = {}
    for model, result in report.items():
        for evaluation, metrics in result.items():
            if isinstance(metrics, dict):
                for metric, value in metrics.items():
                    flat[f"{model}.{evaluation}.{metric}"] = float(value)
    return flat


def plot_embedding_map(path: Path, vectors: dict[str, np.ndarray], labels: np.ndarray, names: list[str]) -> Path:
    """One PCA scatter per model of the same images (e.g. frozen vs fine-tuned on held-out classes)."""
    import matplotlib

    matplotlib.use("Agg")  # no display in pipelines and CI
    import matplotlib.pyplot as plt

    classes = np.unique(labels)
    fig, axes = plt.subplots(1, len(vectors), figsize=(5 * len(vectors), 4.5), squeeze=False)
    for ax, (title, points) in zip(axes[0], vectors.items(), strict=True):
        centred = points - points.mean(axis=0)
        # PCA through the SVD: the two directions of largest variance.
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ components[:2].T if len(components) >= 2 else np.c_[centred[:, 0], np.zeros(len(centred))]
        for cls in classes:
            mask = labels == cls
            ax.scatter(xy[mask, 0], xy[mask, 1], s=12, alpha=0.75, label=names[int(np.flatnonzero(mask)[0])])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.suptitle("Embedding map of the held-out classes (PCA)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
