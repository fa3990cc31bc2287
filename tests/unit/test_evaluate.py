"""Retrieval metrics and the embedding map of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visearch.evaluate import (
    class_confusion,
    evaluate_vectors,
    per_class_metrics,
    plot_embedding_map,
    retrieval_metrics,
)


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


def test_per_class_metrics_match_the_hand_computation_and_average_to_the_overall() -> None:
    vectors = on_a_line(np.concatenate([REFERENCE_X, QUERY_X]))
    labels = np.concatenate([REFERENCE_LABELS, QUERY_LABELS])
    manifest = pd.DataFrame(
        {"label": labels, "class": np.where(labels == A, "A", "B"), "split": ["train"] * 12 + ["heldout"] * 4}
    )
    ap = [(1 / 2) / 3, 0.0, sum((i - 1) / i for i in range(2, 10)) / 9, (6 + 7 / 8) / 9]
    result = per_class_metrics(vectors, manifest)
    assert set(result) == {"A", "B"}
    assert result["A"] == {
        "map_at_r": pytest.approx((ap[0] + ap[1]) / 2, abs=1e-4),
        "precision_at_1": 0.0,
        "queries": 2,
    }
    assert result["B"] == {
        "map_at_r": pytest.approx((ap[2] + ap[3]) / 2, abs=1e-4),
        "precision_at_1": 0.5,
        "queries": 2,
    }
    overall = evaluate_vectors(vectors, manifest)["in_domain"]["mean_average_precision_at_r"]
    assert (result["A"]["map_at_r"] + result["B"]["map_at_r"]) / 2 == pytest.approx(overall, abs=1e-4)


def test_per_class_metrics_cover_both_questions_and_keep_only_the_largest_classes() -> None:
    rng = np.random.default_rng(0)
    sizes = {0: 6, 1: 5, 2: 4, 3: 3, 4: 2}  # held-out classes, queries = images
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()] + [np.repeat([7, 8], 4)])
    split = ["test"] * sum(sizes.values()) + ["train", "train", "train", "heldout"] * 2
    manifest = pd.DataFrame({"label": labels, "class": [f"c{c}" for c in labels], "split": split})
    vectors = rng.normal(size=(len(labels), 8)).astype(np.float32)
    every = per_class_metrics(vectors, manifest)
    assert set(every) == {"c0", "c1", "c2", "c3", "c4", "c7", "c8"}  # held-out and training classes
    assert every["c0"]["queries"] == 6 and every["c7"]["queries"] == 1
    assert set(per_class_metrics(vectors, manifest, limit=3)) == {"c0", "c1", "c2"}


def test_class_confusion_counts_the_classes_each_class_retrieves() -> None:
    gallery = np.repeat([0, 1], 3)
    vectors = np.vstack(
        [np.eye(3)[gallery] + np.linspace(0, 0.1, 6)[:, None] * np.eye(3)[2], np.eye(3)[[0, 1]]]
    ).astype(np.float32)
    manifest = pd.DataFrame(
        {
            "label": [*gallery, 0, 1],
            "class": ["X", "X", "X", "Y", "Y", "Y", "X", "Y"],
            "split": ["train"] * 6 + ["heldout"] * 2,
        }
    )
    confusion = class_confusion(vectors, manifest, k=5)
    rows = {(r.query_class, r.retrieved_class): (r.count, r.share) for r in confusion.itertuples()}
    # Each query finds its own class's three images first, then two of the other class.
    assert rows == {("X", "X"): (3, 0.6), ("X", "Y"): (2, 0.4), ("Y", "Y"): (3, 0.6), ("Y", "X"): (2, 0.4)}
    assert set(confusion["question"]) == {"in_domain"}
