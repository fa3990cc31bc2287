"""Stage 3, evaluate: score both candidates and the current champion on the same rows; the gate decides.

The evaluation the pipeline runs and the one ``visearch evaluate`` runs are this one. The decision
itself (``visearch.gate.decide``) is pure; this stage feeds it the metrics, the champion and the
rollback marks from MLflow, records everything on the run and hands over the model to index.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visearch.categories import Category
from visearch.data.manifest import load_manifest, sample_per_class
from visearch.evaluate import evaluate_models, flatten_report, plot_embedding_map
from visearch.gate import CURRENT, FROZEN, TUNED, GateDecision, GateOutcome, decide, register_candidate
from visearch.model import copy_model, read_spec
from visearch.settings import Settings
from visearch.stages.preprocess import read_params
from visearch.storage import ObjectStore
from visearch.tracking import Champion, TrackedRun, Tracker

log = logging.getLogger(__name__)

CANDIDATES = (TUNED, FROZEN)


def evaluate_stage(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    baseline_dir: Path,
    report_dir: Path,
    champion_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
    tracker: Tracker | None = None,
    run: TrackedRun | None = None,
    show_progress: bool = True,
) -> GateOutcome:
    """The stage: the fine-tuned and the frozen candidate against the champion, with this manifest's parameters.

    ``overrides`` apply on top of the parameters preprocess resolved (``eval_images_per_class``...).
    """
    params = read_params(manifest_dir, category, overrides)
    entry = category.model_copy(update={"train": params})
    outcome = evaluate_and_gate(
        settings,
        store,
        entry,
        manifest_dir,
        {TUNED: model_dir, FROZEN: baseline_dir},
        report_dir,
        champion_dir,
        tracker=tracker,
        run=run,
        show_progress=show_progress,
    )
    print(f"gate for {category.name}: {outcome.decision.reason}")  # the run says why, in its log
    return outcome


def evaluate_step(
    category: str,
    manifest_dir: Path,
    run_id: str,
    model_dir: Path,
    baseline_dir: Path,
    report_dir: Path,
    champion_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
) -> GateOutcome:
    """The pipeline entry: ``evaluate_stage`` in the category's MLflow run, with its champion history."""
    from visearch.stages.tracked import tracked_step

    with tracked_step(run_id) as (ctx, run):
        return evaluate_stage(
            *ctx.for_stage(category),
            manifest_dir,
            model_dir,
            baseline_dir,
            report_dir,
            champion_dir,
            overrides=overrides,
            tracker=ctx.tracker(),
            run=run,
        )


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
