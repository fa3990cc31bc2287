"""The evaluate stage against the champion MLflow serves, on a real SQLite store (fast: no pyfunc logging).

The champion's files are logged as a plain model folder (the registry stores files; ``download`` reads
them back as it reads a pyfunc's), so the stage's two champion paths run in seconds:
the champion is one of the candidates (same weights: its metrics are that candidate's), or it is
downloaded and scored on the same rows. tests/unit/test_gate_rollback.py runs the registered pyfunc path.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import TINY
from tests.unit.test_gate import worse_model
from visearch.gate import CURRENT, FROZEN, TUNED
from visearch.model import copy_model, read_spec
from visearch.stages.evaluate import evaluate_and_gate
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import save_baseline
from visearch.tracking import VERSION_TAG, Tracker


def make_champion(tracker: Tracker, model: Path, scratch: Path) -> str:
    """Register ``model``'s files and point ``champion`` at them; the model version."""
    version = read_spec(model).version
    run = tracker.run(tracker.start_run(TINY))
    copy_model(model, scratch / "artifacts")
    model_id = tracker.log_model(run.run_id, "model", scratch, {VERSION_TAG: version})
    tracker.set_champion(TINY, tracker.register(TINY, run.run_id, model_id, version))
    return version


def prepared(home, registry, store, name: str):  # type: ignore[no-untyped-def]
    """The tiny category's manifest, a worse model, the frozen baseline and a tracker, under work/<name>."""
    category = registry.get(TINY)
    work = home.work_dir / name
    run_preprocess(home, store, category, work / "manifest", show_progress=False)
    worse = worse_model(work / "worse")
    baseline = save_baseline(category.train, work / "baseline")
    return category, work, worse, baseline, Tracker.from_settings(home)


def test_the_stage_scores_the_served_champion_and_keeps_it_when_no_candidate_beats_it(  # type: ignore[no-untyped-def]
    home, registry, store
) -> None:
    category, work, worse, baseline, tracker = prepared(home, registry, store, "champion-test")
    served = make_champion(tracker, baseline, work / "logged")

    def gate(candidates: dict[str, Path], name: str):  # type: ignore[no-untyped-def]
        return evaluate_and_gate(
            home, store, category, work / "manifest", candidates, work / name, work / f"{name}-model",
            tracker=tracker, show_progress=False,
        )  # fmt: skip

    # The champion is among the candidates (a re-run with the same weights): its metrics are that one's.
    same = gate({TUNED: worse, FROZEN: baseline}, "same")
    assert same.report[CURRENT] == same.report[FROZEN] and same.report[CURRENT]["version"] == served
    assert (same.decision.promoted, same.decision.serve) == (None, CURRENT)
    assert same.champion_version == served == read_spec(same.champion_dir).version

    # The champion is not a candidate: downloaded from MLflow, scored on the same rows, kept.
    other = gate({TUNED: worse, FROZEN: worse}, "other")
    assert other.report[CURRENT]["version"] == served != other.report[TUNED]["version"]
    assert other.report[CURRENT]["images"] == other.report[TUNED]["images"]
    assert (other.decision.promoted, other.decision.serve) == (None, CURRENT)
    assert other.champion_version == served == read_spec(other.champion_dir).version
    assert other.decision.reason.startswith(f"champion {served} kept: the best candidate")


def test_the_stage_reads_rollback_marks_from_mlflow_and_never_promotes_a_rejected_model(  # type: ignore[no-untyped-def]
    home, registry, store, capfd
) -> None:
    category, work, worse, baseline, tracker = prepared(home, registry, store, "rejected-test")
    better = make_champion(tracker, baseline, work / "logged-better")
    served = make_champion(tracker, worse, work / "logged-worse")  # rolled back from `better` to this one
    tracker.reject(TINY, better, "rolled back by a test")

    outcome = evaluate_and_gate(
        home, store, category, work / "manifest", {TUNED: worse, FROZEN: baseline}, work / "gate", work / "model",
        tracker=tracker, show_progress=False,
    )  # fmt: skip
    assert "evaluating" not in capfd.readouterr().err  # show_progress=False reaches the scoring: no bars
    # `better` beats the champion on every metric; only the mark, read from MLflow by the stage, keeps it out.
    assert outcome.report[FROZEN]["version"] == better
    assert outcome.decision.promoted is None and outcome.decision.serve == CURRENT
    champion = tracker.champion(TINY)
    assert champion is not None and outcome.champion_version == served == champion.model_version
