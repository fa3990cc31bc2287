"""Retrieval metrics with PML's AccuracyCalculator (+ Recall@K), in-domain and class-disjoint."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

RECALL_AT = (1, 5, 10)
METRICS = (
    "precision_at_1",
    "mean_average_precision_at_r",
    "r_precision",
    *(f"recall_at_{k}" for k in RECALL_AT),
)


def _recall_at(knn_labels: torch.Tensor, query_labels: torch.Tensor, k: int) -> float:
    """Share of queries with at least one same-class image among the k nearest (Recall@K of SOP/CUB papers)."""
    hits = (knn_labels[:, :k] == query_labels.reshape(-1, 1)).any(dim=1)
    return float(hits.float().mean())


class RetrievalCalculator(AccuracyCalculator):
    """AccuracyCalculator with Recall@1/5/10 added the way PML documents custom metrics."""

    def calculate_recall_at_1(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        return _recall_at(knn_labels, query_labels, 1)

    def calculate_recall_at_5(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        return _recall_at(knn_labels, query_labels, 5)

    def calculate_recall_at_10(self, knn_labels, query_labels, **kwargs):  # type: ignore[no-untyped-def]
        return _recall_at(knn_labels, query_labels, 10)

    def requires_knn(self):  # type: ignore[no-untyped-def]
        return [*super().requires_knn(), *(f"recall_at_{k}" for k in RECALL_AT)]


def retrieval_metrics(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
) -> dict[str, float]:
    """P@1, MAP@R, R-precision, Recall@{1,5,10}. Without a reference, each query searches the others."""
    self_search = reference is None
    ref = query if reference is None else reference
    ref_labels = query_labels if reference_labels is None else reference_labels
    _, counts = np.unique(ref_labels, return_counts=True)
    # k must cover R (the largest class) for MAP@R and reach 10 for Recall@10.
    k = int(min(len(ref) - (1 if self_search else 0), max(max(RECALL_AT), int(counts.max()))))
    calculator = RetrievalCalculator(include=METRICS, k=k, device=torch.device("cpu"))
    result = calculator.get_accuracy(
        torch.from_numpy(query), torch.from_numpy(query_labels),
        torch.from_numpy(ref), torch.from_numpy(ref_labels), ref_includes_query=self_search,
    )  # fmt: skip
    return {name: round(float(result[name]), 4) for name in METRICS}
