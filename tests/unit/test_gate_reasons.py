"""The gate's reason, word for word: what the pipeline log, the MLflow ``gate.reason`` tag and the
evaluation report tell an operator about why a model serves. Plus the reports with missing metrics.

Pure and fast (``decide`` on hand-written reports); tests/unit/test_gate.py holds the rules themselves.
"""

from __future__ import annotations

from tests.unit.test_gate import entry
from visearch.gate import CURRENT, FROZEN, TUNED, decide


def test_the_first_promotion_names_the_model_and_its_score() -> None:
    report = {TUNED: entry("t", 0.61234, 0.5), FROZEN: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.to_dict() == {
        "promoted": TUNED,
        "serve": TUNED,
        "reason": "first model of this category: tuned (in-domain MAP@R 0.6123)",
        "eligible": [TUNED, FROZEN],
        "evaluation": "in_domain",
    }


def test_a_reason_carries_the_notes_of_the_candidates_left_out() -> None:
    report = {TUNED: entry("t", 0.7, 0.3), FROZEN: entry("f", 0.4, 0.5)}
    assert decide(report, candidates=[TUNED, FROZEN]).reason == (
        "first model of this category: baseline (in-domain MAP@R 0.4000); tuned falls below the frozen trunk "
        "on held-out classes (class-disjoint MAP@R 0.3000 < 0.5000)"
    )
    report[CURRENT] = entry("c", 0.3, 0.5)
    assert decide(report, candidates=[TUNED, FROZEN], champion=CURRENT, rejected=frozenset({"x"})).reason == (
        "baseline beats champion c on in-domain MAP@R (0.4000 > 0.3000); tuned falls below the frozen trunk "
        "on held-out classes (class-disjoint MAP@R 0.3000 < 0.5000)"
    )


def test_the_champion_kept_says_by_how_much() -> None:
    report = {TUNED: entry("t", 0.5, 0.6), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("c", 0.55, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT, rejected=frozenset({"f"}))
    assert (decision.promoted, decision.serve, decision.eligible) == (None, CURRENT, [TUNED])
    assert decision.reason == (
        "champion c kept: the best candidate tuned does not beat it on in-domain MAP@R (0.5000 <= 0.5500); "
        "baseline (f) was rolled back from: not promoted again"
    )


def test_nothing_eligible_keeps_the_champion_or_serves_the_frozen_trunk() -> None:
    report = {TUNED: entry("t", 0.9, 0.6), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("c", 0.5, 0.5)}
    kept = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT, rejected=frozenset({"t", "f"}))
    assert (kept.promoted, kept.serve, kept.eligible) == (None, CURRENT, [])
    assert kept.reason == (
        "champion kept: no eligible candidate; tuned (t) was rolled back from: not promoted again; "
        "baseline (f) was rolled back from: not promoted again"
    )
    first = decide(report, candidates=[TUNED, FROZEN], rejected=frozenset({"t", "f"}))
    assert (first.promoted, first.serve) == (None, FROZEN)


def test_the_champion_already_serving_is_named_with_its_version() -> None:
    report = {TUNED: entry("t", 0.3, 0.5), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert (decision.promoted, decision.serve) == (None, CURRENT)
    assert decision.reason == "the best candidate (baseline, f) is the champion already"


def test_a_champion_without_held_out_images_moves_everyone_to_held_out_classes() -> None:
    # The candidates have in-domain metrics, the champion does not: all are ranked on held-out classes.
    report = {TUNED: entry("t", 0.9, 0.55), FROZEN: entry("f", 0.2, 0.5), CURRENT: entry("c", None, 0.6)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert decision.evaluation == "class_disjoint" and decision.promoted is None
    assert decision.reason == (
        "champion c kept: the best candidate tuned does not beat it on class-disjoint MAP@R (0.5500 <= 0.6000)"
    )


def test_missing_metrics_count_as_unknown_not_as_zero() -> None:
    # No class-disjoint metric for the frozen trunk: no floor, the tuned model stays eligible.
    report = {TUNED: entry("t", 0.7, 0.1), FROZEN: entry("f", 0.4, None)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.eligible == [TUNED, FROZEN] and decision.promoted == TUNED
    # A tuned model without a class-disjoint metric is not held to the floor either.
    report = {TUNED: entry("t", 0.7, None), FROZEN: entry("f", 0.4, 0.5)}
    assert decide(report, candidates=[TUNED, FROZEN]).eligible == [TUNED, FROZEN]
    # Measured on nothing at all, a candidate ranks last.
    report = {TUNED: entry("t", None, None), FROZEN: entry("f", None, 0.0)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.promoted == FROZEN and decision.reason == (
        "first model of this category: baseline (class-disjoint MAP@R 0.0000)"
    )
    # Metrics that are not a table of numbers are no metrics.
    report = {TUNED: {"version": "t", "in_domain": "n/a", "class_disjoint": {}}, FROZEN: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.evaluation == "class_disjoint" and decision.promoted == FROZEN
