"""The evaluation gate: which model serves a category (design.md "Evaluation: two questions").

A candidate takes the ``champion`` alias only if it beats the current champion on in-domain
MAP@R (the classes the index serves today) without falling below the frozen pretrained trunk on
class-disjoint MAP@R (what happens when new classes arrive). The frozen trunk is a candidate too,
so the first run picks the better of fine-tuned and frozen. The champion is re-evaluated on the
same data as the candidates, so the comparison is fair when the data changed.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visearch.evaluate import flatten_report
from visearch.model import read_spec
from visearch.tracking import CANDIDATE_TAG, VERSION_TAG, TrackedRun, Tracker

PRIMARY = "mean_average_precision_at_r"
FROZEN = "baseline"
TUNED = "tuned"
CURRENT = "champion"
# The name of each candidate's logged MLflow model in the run (the registry points there).
ARTIFACT_PATHS = {TUNED: "model", FROZEN: "baseline"}


@dataclass
class GateDecision:
    """The gate's verdict: which candidate (if any) becomes champion, and why."""

    promoted: str | None
    serve: str
    reason: str
    eligible: list[str]
    evaluation: str

    def to_dict(self) -> dict[str, Any]:
        """The decision as a plain dict (for the gate report)."""
        return asdict(self)


def _map_at_r(entry: dict[str, Any], evaluation: str) -> float | None:
    metrics = entry.get(evaluation)
    return float(metrics[PRIMARY]) if isinstance(metrics, dict) and PRIMARY in metrics else None


def decide(
    report: dict[str, dict[str, Any]],
    *,
    candidates: list[str],
    frozen: str = FROZEN,
    champion: str | None = None,
    rejected: frozenset[str] = frozenset(),
) -> GateDecision:
    """Pick the model to serve from an evaluation report (all entries measured on the same data).

    Args:
        report: ``{name: {"version": ..., "in_domain": {...}, "class_disjoint": {...}}}``.
        candidates: Names of the new candidates (the frozen trunk among them).
        frozen: Name of the frozen-trunk entry: the class-disjoint floor.
        champion: Name of the current champion's entry, None before the first promotion.
        rejected: Model versions a rollback took out of service: never promoted again (a re-run
            that trains the same weights must not undo the rollback).
    """
    names = [*candidates, *([champion] if champion else [])]
    # In-domain needs held-out images of the training classes; without them, rank on held-out classes.
    evaluation = "in_domain" if all(_map_at_r(report[n], "in_domain") is not None for n in names) else "class_disjoint"
    floor = _map_at_r(report[frozen], "class_disjoint")
    eligible, notes = [], []
    for name in candidates:
        if report[name]["version"] in rejected:
            notes.append(f"{name} ({report[name]['version']}) was rolled back from: not promoted again")
            continue
        disjoint = _map_at_r(report[name], "class_disjoint")
        if name != frozen and floor is not None and disjoint is not None and disjoint < floor:
            notes.append(
                f"{name} falls below the frozen trunk on held-out classes "
                f"(class-disjoint MAP@R {disjoint:.4f} < {floor:.4f})"
            )
            continue
        eligible.append(name)

    if not eligible:
        reason = f"champion kept: no eligible candidate; {'; '.join(notes)}"
        return GateDecision(None, champion or frozen, reason, eligible, evaluation)

    def score(name: str) -> float:
        value = _map_at_r(report[name], evaluation)
        return -1.0 if value is None else value

    # On a tie the frozen trunk wins: equal today, and it has not forgotten anything.
    best = max(eligible, key=lambda name: (score(name), name == frozen))
    label = evaluation.replace("_", "-")
    why = f"; {'; '.join(notes)}" if notes else ""
    if champion is None:
        reason = f"first model of this category: {best} ({label} MAP@R {score(best):.4f}){why}"
        return GateDecision(best, best, reason, eligible, evaluation)
    champion_version = report[champion]["version"]
    if report[best]["version"] == champion_version:
        reason = f"the best candidate ({best}, {champion_version}) is the champion already{why}"
        return GateDecision(None, champion, reason, eligible, evaluation)
    if score(best) > score(champion):
        reason = (
            f"{best} beats champion {champion_version} on {label} MAP@R "
            f"({score(best):.4f} > {score(champion):.4f}){why}"
        )
        return GateDecision(best, best, reason, eligible, evaluation)
    reason = (
        f"champion {champion_version} kept: the best candidate {best} does not beat it on {label} MAP@R "
        f"({score(best):.4f} <= {score(champion):.4f}){why}"
    )
    return GateDecision(None, champion, reason, eligible, evaluation)


@dataclass
class GateOutcome:
    """The gate's decision and report, and the model to index (new or kept champion) with its versions."""

    decision: GateDecision
    report: dict[str, Any]
    champion_dir: Path
    champion_version: str
    registry_version: str | None

    @property
    def metrics(self) -> dict[str, float]:
        """Flat metrics (``tuned.in_domain.precision_at_1``...) plus ``gate.promoted`` (1/0)."""
        return {**flatten_report(self.report), "gate.promoted": float(self.decision.promoted is not None)}


def register_candidate(tracker: Tracker, run: TrackedRun, category: str, name: str, model_dir: Path) -> str:
    """Register a candidate as an MLflow pyfunc model logged from the run (once per content hash)."""
    version = read_spec(model_dir).version
    existing = tracker.find_version(category, version)
    if existing:
        return existing
    from visearch.mlflow_model import save_pyfunc  # MLflow's model machinery: only when registering

    tags = {VERSION_TAG: version, CANDIDATE_TAG: name}
    with tempfile.TemporaryDirectory(prefix="visearch-register-") as scratch:
        model_id = tracker.log_model(
            run.run_id, ARTIFACT_PATHS.get(name, name), save_pyfunc(model_dir, Path(scratch) / "model"), tags
        )
    return tracker.register(category, run.run_id, model_id, version, {CANDIDATE_TAG: name})
