"""The evaluation gate: which model serves a category (design.md "Evaluation: two questions").

A candidate takes the ``champion`` alias only if it beats the current champion on in-domain
MAP@R (the classes the index serves today) without falling below the frozen pretrained trunk on
class-disjoint MAP@R (what happens when new classes arrive). The frozen trunk is a candidate too,
so the first run picks the better of fine-tuned and frozen. The champion is re-evaluated on the
same data as the candidates, so the comparison is fair when the data changed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visearch.categories import Category
from visearch.data.manifest import load_manifest, sample_per_class
from visearch.evaluate import evaluate_models, flatten_report, plot_embedding_map
from visearch.model import copy_model, read_spec
from visearch.settings import Settings
from visearch.storage import ObjectStore
from visearch.tracking import CANDIDATE_TAG, VERSION_TAG, Champion, TrackedRun, Tracker

log = logging.getLogger(__name__)

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


def evaluate_and_gate(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    candidates: dict[str, Path],
    report_dir: Path,
    champion_dir: Path,
    *,
    tracker: Tracker | None = None,
    run: TrackedRun | None = None,
    show_progress: bool = True,
) -> GateOutcome:
    """Evaluate the candidates and the current champion, decide, record, and hand over the champion.

    Writes ``report.json`` (metrics + decision) and ``embedding_map.png`` to ``report_dir`` and the
    model to index (the new or the kept champion) to ``champion_dir``. With a tracker, the metrics,
    report and map go to the run, every candidate is registered once per content hash, and the
    ``champion`` alias moves only when the gate says so. Every model is scored on the same rows: at
    most ``category.train.eval_images_per_class`` per class (the evaluation budget).
    """
    every_row = load_manifest(manifest_dir)
    budget = category.train.eval_images_per_class
    manifest = sample_per_class(every_row, budget, seed=category.train.seed)
    if len(manifest) < len(every_row):
        log.info("evaluation budget: scoring on %d of %d images (%s per class)", len(manifest), len(every_row), budget)
    current = tracker.champion(category.name) if tracker else None
    # The current champion is downloaded to a scratch folder: it is not part of this step's outputs.
    with tempfile.TemporaryDirectory(prefix="visearch-champion-") as scratch:
        if current and tracker and current.model_version not in {read_spec(p).version for p in candidates.values()}:
            current_dir: Path | None = tracker.download(current, Path(scratch))
        else:
            current_dir = None
        rejected = tracker.rejected(category.name) if tracker else frozenset()
        report, vectors, decision, serve_dir = _evaluate(
            settings, store, manifest, candidates, current, current_dir, rejected, show_progress=show_progress
        )
        copy_model(serve_dir, champion_dir)
    report_path, map_path = _write_report(report_dir, report, decision, vectors, manifest)
    champion_version = read_spec(champion_dir).version
    registry_version = None
    if tracker and run:
        registered = {
            name: register_candidate(tracker, run, category.name, name, path) for name, path in candidates.items()
        }
        if decision.promoted:
            tracker.set_champion(category.name, registered[decision.promoted])
        champ = tracker.champion(category.name)
        registry_version = champ.registry_version if champ else None
        run.log_metrics({**flatten_report(report), "gate.promoted": float(decision.promoted is not None)})
        for path in (report_path, map_path):
            if path:
                run.log_artifact(path, "evaluation")
        run.set_tags(
            {
                "gate.decision": "promoted" if decision.promoted else "kept",
                "gate.reason": decision.reason,
                "gate.champion_model_version": champion_version,
                "gate.champion_registry_version": registry_version or "",
                "gate.evaluated_images": f"{len(manifest)} of {len(every_row)}",
            }
        )
    return GateOutcome(decision, report, champion_dir, champion_version, registry_version)


def _evaluate(
    settings: Settings,
    store: ObjectStore,
    manifest: pd.DataFrame,
    candidates: dict[str, Path],
    current: Champion | None,
    current_dir: Path | None,
    rejected: frozenset[str],
    *,
    show_progress: bool,
) -> tuple[dict[str, Any], dict[str, np.ndarray], GateDecision, Path]:
    """Metrics of every model on the same data, the decision, and the folder of the model to serve."""
    models = dict(candidates)
    if current_dir:
        models[CURRENT] = current_dir
    report, vectors = evaluate_models(settings, store, manifest, models, show_progress=show_progress)
    if current and not current_dir:
        # The champion is one of the candidates (same weights): its metrics are that candidate's.
        same = next(name for name in candidates if report[name]["version"] == current.model_version)
        report[CURRENT] = dict(report[same])
        models[CURRENT] = candidates[same]
    decision = decide(report, candidates=list(candidates), champion=CURRENT if current else None, rejected=rejected)
    return report, vectors, decision, models[decision.serve]


def _write_report(
    report_dir: Path,
    report: dict[str, Any],
    decision: GateDecision,
    vectors: dict[str, np.ndarray],
    manifest: pd.DataFrame,
) -> tuple[Path, Path | None]:
    """``report.json`` (metrics + decision) and, with enough held-out-class images, ``embedding_map.png``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / "report.json"
    report_path.write_text(json.dumps({**report, "gate": decision.to_dict()}, indent=2), encoding="utf-8")
    test = (manifest["split"] == "test").to_numpy()
    if test.sum() <= 2:
        return report_path, None
    shown = {f"{name} ({report[name]['version']})": vectors[name][test] for name in vectors}
    classes = manifest["class"].astype(str).to_numpy()[test].tolist()
    return report_path, plot_embedding_map(
        report_dir / "embedding_map.png", shown, manifest["label"].to_numpy()[test], classes
    )


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
