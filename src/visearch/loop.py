"""The five steps in this process, one after another: what tests and benchmarks run without kfp.

The kfp pipeline runs the same library steps, each as a component in its own process; this module
is the in-process equivalent (no subprocesses, no artifact copies), tracked in MLflow the same way.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visearch.categories import Category
from visearch.gate import FROZEN, TUNED, evaluate_and_gate
from visearch.settings import Settings
from visearch.steps import run_embed, run_preprocess, run_train, run_upsert, save_baseline
from visearch.storage import ObjectStore
from visearch.tracking import Tracker


@dataclass
class LoopOutcome:
    """What one in-process loop produced: manifest, metrics, the live collection and the gate's reason."""

    manifest: Path
    metrics: dict[str, Any]
    collection: str
    count: int
    reason: str = ""
    run_id: str | None = None


def run_loop(
    settings: Settings, store: ObjectStore, category: Category, *, show_progress: bool = True, track: bool = True
) -> LoopOutcome:
    """Preprocess → train → evaluate + gate → embed → upsert in this process, tracked in MLflow.

    Without ``track`` (no MLflow), the gate has no champion history and picks the better candidate.
    """
    work = settings.work_dir / category.name
    tracker = None
    run = None
    if track:
        tracker = Tracker.from_settings(settings)
        run = tracker.run(tracker.start_run(category.name, tags={"visearch.runner": "run_loop"}))
    guard = run.failing() if run else nullcontext()
    with guard:
        manifest, _ = run_preprocess(settings, store, category, work / "manifest", show_progress=show_progress, run=run)
        trained = run_train(
            settings, store, work / "manifest", category.train, work / "train", show_progress=show_progress, run=run
        )
        baseline = save_baseline(category.train, work / "baseline")
        outcome = evaluate_and_gate(
            settings,
            store,
            category,
            work / "manifest",
            {TUNED: trained.model_dir, FROZEN: baseline},
            work / "evaluation",
            work / "champion",
            tracker=tracker,
            run=run,
            show_progress=show_progress,
        )
        embeddings = run_embed(
            settings, store, work / "manifest", outcome.champion_dir, work / "embeddings", show_progress=show_progress
        )
        result = run_upsert(settings, store, category, work / "manifest", outcome.champion_dir, embeddings, run=run)
    if run:
        run.end()
    metrics = {name: entry for name, entry in outcome.report.items()}
    return LoopOutcome(
        manifest, metrics, result.collection, result.count, outcome.decision.reason, run.run_id if run else None
    )
