"""Retrieval metrics and the embedding map of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visearch.evaluate import plot_embedding_map, retrieval_metrics


def test_metrics_perfect_and_random_embeddings() -> None:
    labels = np.repeat(np.arange(4), 12)
    perfect = np.eye(4, dtype=np.float32)[labels] + np.random.default_rng(0).normal(0, 0.01, (48, 4)).astype(np.float32)
    result = retrieval_metrics(perfect, labels)
    assert result["precision_at_1"] == 1.0 and result["mean_average_precision_at_r"] == 1.0
    assert result["recall_at_10"] == 1.0
    noise = np.random.default_rng(1).normal(size=(48, 16)).astype(np.float32)
    random_result = retrieval_metrics(noise, labels)
    assert random_result["mean_average_precision_at_r"] < 0.5
    assert random_result["recall_at_1"] <= random_result["recall_at_5"] <= random_result["recall_at_10"]


def test_embedding_map_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 5)
    vectors = {"frozen": rng.normal(size=(15, 8)), "tuned": rng.normal(size=(15, 8))}
    path = plot_embedding_map(tmp_path / "map.png", vectors, labels, [f"class {i}" for i in labels])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
