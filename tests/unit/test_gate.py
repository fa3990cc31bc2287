"""The evaluation gate: unit rules, and a worse model that must leave champion and live index alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TINY
from visearch.gate import CURRENT, FROZEN, TUNED, decide


def entry(version: str, in_domain: float | None, class_disjoint: float | None) -> dict[str, Any]:
    result: dict[str, Any] = {"version": version}
    if in_domain is not None:
        result["in_domain"] = {"mean_average_precision_at_r": in_domain}
    if class_disjoint is not None:
        result["class_disjoint"] = {"mean_average_precision_at_r": class_disjoint}
    return result


def test_first_run_promotes_the_better_of_tuned_and_frozen() -> None:
    report = {TUNED: entry("t", 0.6, 0.5), FROZEN: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.promoted == TUNED and decision.serve == TUNED
    assert "first model" in decision.reason

    report = {TUNED: entry("t", 0.3, 0.5), FROZEN: entry("f", 0.4, 0.5)}
    assert decide(report, candidates=[TUNED, FROZEN]).promoted == FROZEN


def test_tuned_model_that_forgets_held_out_classes_is_not_eligible() -> None:
    # Better in-domain, but below the frozen trunk on held-out classes (naive fine-tuning forgets).
    report = {TUNED: entry("t", 0.7, 0.3), FROZEN: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.promoted == FROZEN and decision.eligible == [FROZEN]
    assert "falls below the frozen trunk" in decision.reason


def test_a_model_rolled_back_from_is_never_promoted_again() -> None:
    # The tuned model is better, but a rollback took it out of service: the champion stays.
    report = {TUNED: entry("t", 0.9, 0.6), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("c", 0.5, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT, rejected=frozenset({"t"}))
    assert decision.promoted is None and decision.serve == CURRENT and decision.eligible == [FROZEN]
    assert "rolled back from" in decision.reason
    # Without the rejection the same report promotes it: the rule above is what kept the champion.
    assert decide(report, candidates=[TUNED, FROZEN], champion=CURRENT).promoted == TUNED
    # Everything rejected: the champion is kept, with the reason.
    everything = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT, rejected=frozenset({"t", "f"}))
    assert everything.promoted is None and everything.serve == CURRENT and "no eligible candidate" in everything.reason


def test_champion_is_kept_unless_beaten_in_domain() -> None:
    report = {TUNED: entry("t", 0.5, 0.6), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("c", 0.55, 0.2)}
    kept = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert kept.promoted is None and kept.serve == CURRENT and "kept" in kept.reason

    report[TUNED] = entry("t", 0.6, 0.6)
    beaten = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert beaten.promoted == TUNED and "beats champion c" in beaten.reason


def test_candidate_equal_to_champion_changes_nothing() -> None:
    report = {TUNED: entry("t", 0.3, 0.5), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert decision.promoted is None and "champion already" in decision.reason


def test_without_held_out_images_the_gate_ranks_on_held_out_classes() -> None:
    report = {TUNED: entry("t", None, 0.6), FROZEN: entry("f", None, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.evaluation == "class_disjoint" and decision.promoted == TUNED


def test_on_a_tie_the_frozen_trunk_wins_over_tuned_in_either_order() -> None:
    report = {TUNED: entry("t", 0.5, 0.5), FROZEN: entry("f", 0.5, 0.5)}
    for candidates in ([TUNED, FROZEN], [FROZEN, TUNED]):
        decision = decide(report, candidates=candidates)
        assert decision.promoted == FROZEN and decision.serve == FROZEN, candidates
        assert decision.eligible == candidates
    # Tied with each other and ahead of the champion: the frozen trunk is what gets promoted.
    report[CURRENT] = entry("c", 0.4, 0.5)
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert decision.promoted == FROZEN and f"{FROZEN} beats champion c" in decision.reason


def test_on_a_tie_the_champion_is_kept() -> None:
    report = {TUNED: entry("t", 0.55, 0.5), FROZEN: entry("f", 0.4, 0.5), CURRENT: entry("c", 0.55, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    assert decision.promoted is None and decision.serve == CURRENT
    assert "champion c kept" in decision.reason and "(0.5500 <= 0.5500)" in decision.reason
    # A hair better does beat it: the tie, not the numbers, kept the champion above.
    report[TUNED] = entry("t", 0.5501, 0.5)
    assert decide(report, candidates=[TUNED, FROZEN], champion=CURRENT).promoted == TUNED


def test_a_tuned_model_level_with_the_frozen_trunk_on_held_out_classes_is_eligible() -> None:
    report = {TUNED: entry("t", 0.7, 0.5), FROZEN: entry("f", 0.4, 0.5)}
    decision = decide(report, candidates=[TUNED, FROZEN])
    assert decision.eligible == [TUNED, FROZEN] and decision.promoted == TUNED


def worse_model(directory: Path) -> Path:
    """A randomly initialised trunk with a 4-d head: far worse than the pretrained one, deterministic."""
    import torch

    from visearch.model import EmbeddingModel, ModelSpec, build_embedder, build_trunk, save_model, trunk_output_dim

    torch.manual_seed(0)
    trunk = build_trunk("efficientnet-lite0", pretrained=False)
    spec = ModelSpec("efficientnet-lite0", [4], 32, trunk_output_dim(trunk, 32))
    model = EmbeddingModel(trunk, build_embedder(spec.trunk_dim, [4]), spec)
    model.eval()
    return save_model(model, directory)


@pytest.mark.slow
def test_worse_model_leaves_champion_and_live_collection_unchanged(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    from visearch.index import open_index
    from visearch.stages.embed import run_embed
    from visearch.stages.evaluate import evaluate_and_gate
    from visearch.stages.in_process import run_in_process
    from visearch.stages.upsert import run_upsert
    from visearch.tracking import Tracker

    category = registry.get(TINY)
    first = run_in_process(home, store, category, show_progress=False)  # establishes champion + live index
    tracker = Tracker.from_settings(home)
    champion = tracker.champion(TINY)
    assert champion is not None

    work = home.work_dir / "gate-test"
    run = tracker.run(tracker.start_run(TINY))
    candidates = {TUNED: worse_model(work / "worse"), FROZEN: home.work_dir / TINY / "baseline"}
    outcome = evaluate_and_gate(
        home,
        store,
        category,
        home.work_dir / TINY / "manifest",
        candidates,
        work / "report",
        work / "champion",
        tracker=tracker,
        run=run,
        show_progress=False,
    )

    metric = "mean_average_precision_at_r"
    assert outcome.report[TUNED]["in_domain"][metric] < outcome.report[CURRENT]["in_domain"][metric]
    assert outcome.decision.promoted is None
    assert "kept" in outcome.decision.reason or "champion already" in outcome.decision.reason
    assert tracker.champion(TINY) == champion  # the alias did not move
    assert outcome.champion_version == champion.model_version
    tags = tracker.client.get_run(run.run_id).data.tags
    assert tags["gate.decision"] == "kept" and tags["gate.reason"] == outcome.decision.reason

    # A champion that is none of the candidates is fetched from the registry and re-evaluated.
    worse = {TUNED: candidates[TUNED], FROZEN: candidates[TUNED]}
    again = evaluate_and_gate(
        home,
        store,
        category,
        home.work_dir / TINY / "manifest",
        worse,
        work / "report2",
        work / "champion2",
        tracker=tracker,
        run=tracker.run(tracker.start_run(TINY)),
        show_progress=False,
    )
    assert again.report[CURRENT]["version"] == champion.model_version != again.report[TUNED]["version"]
    assert again.decision.promoted is None and tracker.champion(TINY) == champion
    assert again.champion_version == champion.model_version
    assert not (work / "report2" / "current-champion").exists()  # only the report is the step's output

    # embed + upsert index the champion: the live collection stays the very same one.
    embeddings = run_embed(
        home,
        store,
        category,
        home.work_dir / TINY / "manifest",
        outcome.champion_dir,
        work / "emb",
        show_progress=False,
    )
    result = run_upsert(home, store, category, home.work_dir / TINY / "manifest", outcome.champion_dir, embeddings)
    assert result.reused and result.collection == first.collection
    index = open_index(home)
    try:
        assert index.require_live(TINY).name == first.collection
        assert [v.name for v in index.versions(TINY)] == [first.collection]
        assert index.count(first.collection) == first.count
    finally:
        index.close()


def test_evaluation_budget_scores_every_model_on_the_same_sample(home, registry, store) -> None:  # type: ignore[no-untyped-def]
    from visearch.data.manifest import load_manifest
    from visearch.stages.evaluate import evaluate_and_gate
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    category = registry.get(TINY)
    work = home.work_dir / "budget-test"
    run_preprocess(home, store, category, work / "manifest", show_progress=False)
    labels = load_manifest(work / "manifest")["label"]
    candidates = {TUNED: worse_model(work / "worse"), FROZEN: save_baseline(category.train, work / "baseline")}

    def images_scored(per_class: int | None) -> set[int]:
        params = category.train.model_copy(update={"eval_images_per_class": per_class})
        entry = category.model_copy(update={"train": params})
        outcome = evaluate_and_gate(
            home,
            store,
            entry,
            work / "manifest",
            candidates,
            work / f"report{per_class}",
            work / f"champion{per_class}",
            show_progress=False,
        )
        return {outcome.report[name]["images"] for name in candidates}

    assert labels.value_counts().max() > 2  # the budget has something to cut
    assert images_scored(2) == {int(labels.value_counts().clip(upper=2).sum())}
    assert images_scored(None) == {len(labels)}
