"""Retrieval metrics and the embedding map of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visearch.evaluate import evaluate_vectors, plot_embedding_map, retrieval_metrics


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


# A hand-checked example on a line (Euclidean neighbours, no ties): twelve reference images at
# x = 0..11, class A at 0, 1 and 11 (R = 3), class B at 2..10 (R = 9). Nearest first:
# q1 (A, x=1.6):  2B 1A 3B 0A 4B ...           hits at ranks 2, 4 (R=3)    AP@R (1/2) / 3
# q2 (A, x=6.1):  6B 7B 5B 8B 4B 9B 3B 10B 2B 11A: first hit at rank 10     AP@R 0
# q3 (B, x=11.3): 11A 10B 9B ... 3B 2B 1A      hits at ranks 2..9 (R=9)    AP@R sum((i-1)/i, i=2..9) / 9
# q4 (B, x=4.2):  4B 5B 3B 6B 2B 7B 1A 8B 0A   hits at ranks 1..6, 8       AP@R (6 + 7/8) / 9
REFERENCE_X = np.arange(12.0)
A, B = 0, 1
REFERENCE_LABELS = np.array([A if x in (0, 1, 11) else B for x in range(12)])
QUERY_X = np.array([1.6, 6.1, 11.3, 4.2])
QUERY_LABELS = np.array([A, A, B, B])


def on_a_line(x: np.ndarray) -> np.ndarray:
    return np.stack([x, np.zeros_like(x)], axis=1).astype(np.float32)


def hand_computed() -> dict[str, float]:
    ap = [(1 / 2) / 3, 0.0, sum((i - 1) / i for i in range(2, 10)) / 9, (6 + 7 / 8) / 9]
    return {
        "precision_at_1": (0 + 0 + 0 + 1) / 4,
        "mean_average_precision_at_r": sum(ap) / 4,
        "r_precision": (1 / 3 + 0 + 8 / 9 + 7 / 9) / 4,
        "recall_at_1": (0 + 0 + 0 + 1) / 4,
        "recall_at_5": (1 + 0 + 1 + 1) / 4,  # q2's first hit is at rank 10
        "recall_at_10": (1 + 1 + 1 + 1) / 4,
    }


def test_metrics_of_queries_against_a_separate_reference_set_match_a_hand_computation() -> None:
    result = retrieval_metrics(on_a_line(QUERY_X), QUERY_LABELS, on_a_line(REFERENCE_X), REFERENCE_LABELS)
    expected = hand_computed()
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-4), name  # the report rounds to 4 places


def test_in_domain_searches_held_out_images_among_the_training_images_only() -> None:
    """evaluate_vectors: held-out rows query the train rows (not themselves, not the test rows)."""
    # Test rows (held-out classes 2 and 3) sit right on the queries: if they were part of the
    # reference they would be every query's nearest neighbour.
    test_x = np.array([1.61, 6.11, 100.0, 101.0])
    test_labels = np.array([2, 3, 2, 3])
    vectors = on_a_line(np.concatenate([REFERENCE_X, QUERY_X, test_x]))
    manifest = pd.DataFrame(
        {
            "label": np.concatenate([REFERENCE_LABELS, QUERY_LABELS, test_labels]),
            "split": ["train"] * 12 + ["heldout"] * 4 + ["test"] * 4,
        }
    )
    results = evaluate_vectors(vectors, manifest)
    expected = hand_computed()
    for name, value in expected.items():
        assert results["in_domain"][name] == pytest.approx(value, abs=1e-4), name
    # Class-disjoint: the test rows among themselves; 1.61 and 6.11 are each other's nearest, and
    # 100 and 101, all of other classes: every first neighbour is wrong.
    disjoint = results["class_disjoint"]
    assert disjoint["precision_at_1"] == 0.0 and disjoint["recall_at_1"] == 0.0


def test_embedding_map_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 5)
    vectors = {"frozen": rng.normal(size=(15, 8)), "tuned": rng.normal(size=(15, 8))}
    path = plot_embedding_map(tmp_path / "map.png", vectors, labels, [f"class {i}" for i in labels])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_evaluation_never_queries_validation_rows_and_keeps_its_gallery() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 10)
    vectors = (np.eye(6)[labels] + rng.normal(0, 0.8, (60, 6))).astype(np.float32)
    split = np.where(labels < 3, "train", "test").astype(object)
    split[[0, 10, 20]] = "heldout"
    plain = pd.DataFrame({"label": labels, "split": split})
    validated = plain.copy()
    validated.loc[[1, 2, 11, 21], "split"] = "validation"  # training-class images set aside to pick the epoch
    validated.loc[validated["label"] == 5, "split"] = "validation_class"
    # In-domain: the same queries against the same gallery; class-disjoint: the two test classes left.
    assert evaluate_vectors(vectors, validated)["in_domain"] == evaluate_vectors(vectors, plain)["in_domain"]
    test = (labels == 3) | (labels == 4)
    assert evaluate_vectors(vectors, validated)["class_disjoint"] == retrieval_metrics(vectors[test], labels[test])
