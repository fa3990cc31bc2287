"""What the CLI prints: JSON, the metrics table of real evaluations, the search results table."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visearch.cli.output import echo_json, format_metrics, format_results
from visearch.evaluate import METRICS, evaluate_vectors
from visearch.search_options import SearchResult


def evaluation(seed: int, noise: float) -> dict[str, dict[str, float]]:
    """Real metrics of vectors clustered by label (``noise`` blurs the clusters), in-domain and class-disjoint."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(6), 6)
    centres = np.eye(8, dtype=np.float32)[labels]
    vectors = centres + noise * rng.standard_normal(centres.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    split = np.where(labels >= 4, "test", np.tile(["train", "train", "train", "train", "heldout", "heldout"], 6))
    return evaluate_vectors(vectors, pd.DataFrame({"label": labels, "split": split}))


def test_echo_json_prints_indented_json_and_text_for_other_values(capsys: pytest.CaptureFixture[str]) -> None:
    when = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
    echo_json({"kept": 3, "path": Path("/tmp/x"), "when": when, "dropped": [["a.png", "missing image"]]})
    printed = capsys.readouterr().out
    assert json.loads(printed) == {
        "kept": 3,
        "path": "/tmp/x",
        "when": str(when),
        "dropped": [["a.png", "missing image"]],
    }
    assert '\n  "kept": 3,' in printed  # indented: readable in a terminal


def test_the_metrics_table_has_a_row_per_model_and_evaluation() -> None:
    frozen, tuned = evaluation(0, 0.9), evaluation(1, 0.3)
    assert set(frozen) == set(tuned) == {"in_domain", "class_disjoint"}
    only_disjoint = {"class_disjoint": tuned["class_disjoint"]}
    table = format_metrics({"baseline": frozen, "tuned": tuned, "champion": only_disjoint})
    header, *rows = table.splitlines()
    assert header.split() == ["model", "evaluation", "P@1", "MAP@R", "R-prec", "R@1", "R@5", "R@10"]
    expected = [
        ("baseline", "in_domain", frozen["in_domain"]),
        ("baseline", "class_disjoint", frozen["class_disjoint"]),
        ("tuned", "in_domain", tuned["in_domain"]),
        ("tuned", "class_disjoint", tuned["class_disjoint"]),
        ("champion", "class_disjoint", tuned["class_disjoint"]),  # a missing evaluation is no row
    ]
    assert [row.split()[:2] for row in rows] == [[model, kind] for model, kind, _ in expected]
    for row, (_, _, metrics) in zip(rows, expected, strict=True):
        assert [float(value) for value in row.split()[2:]] == [round(metrics[m], 3) for m in METRICS]
        assert len(row) == len(header)  # columns line up under their names
    assert frozen["in_domain"]["precision_at_1"] != tuned["in_domain"]["precision_at_1"]  # the rows differ


def test_search_results_show_similarity_and_calibrated_rank() -> None:
    results = [
        SearchResult("id-1", 0.9312, 93.12, "Sneaker", "sneaker/1.png", calibrated=71.26),
        SearchResult("id-2", 0.5, 50.0, "Ankle-boot", "boot/2.png", calibrated=None),
    ]
    header, *rows = format_results(results).splitlines()
    assert header.split() == ["#", "similarity", "calibrated", "class", "file"]
    assert [row.split() for row in rows] == [
        ["1", "93.1%", "71.3%", "Sneaker", "sneaker/1.png"],
        ["2", "50.0%", "-", "Ankle-boot", "boot/2.png"],
    ]
    assert all(row.index(result.file) == header.index("file") for row, result in zip(rows, results, strict=True))


@pytest.mark.parametrize("kind", ["recommend", "rrf"])
def test_scores_that_are_no_cosine_similarity_are_shown_as_they_are(kind: str) -> None:
    results = [SearchResult("id-1", 0.03278689, 3.28, "Bag", "bag/1.png", calibrated=40.0)]
    header, row = format_results(results, kind).splitlines()
    assert header.split() == ["#", kind, "score", "class", "file"]
    assert row.split() == ["1", "0.0328", "Bag", "bag/1.png"]  # no percentage, no calibrated rank


def test_no_results_say_why() -> None:
    assert format_results([]) == "no results above the minimum similarity"
    assert format_results([], "rrf") == "no results above the minimum similarity"
