"""All five stages in this process, one after another: the pipeline without kfp (tests, benchmarks).

The kfp pipeline runs the same stage functions, each as a component in its own process; here they
share one process and one MLflow run, with no artifact copies. Folders land under
``<home>/work/<category>/``, named as the CLI names them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visearch.categories import Category
from visearch.settings import Settings
from visearch.stages.embed import output_name, run_embed
from visearch.stages.evaluate import evaluate_stage
from visearch.stages.folders import BASELINE, CHAMPION, EVALUATION, MANIFEST, TRAINED
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import train_candidates
from visearch.stages.upsert import run_upsert
from visearch.storage import ObjectStore
from visearch.tracking import Tracker


@dataclass
class InProcessOutcome:
    """What one in-process run produced: manifest, metrics, the live collection and the gate's reason."""

    manifest: Path
    metrics: dict[str, Any]
    collection: str
    count: int
    reason: str = ""
    run_id: str | None = None


def run_in_process(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    *,
    show_progress: bool = True,
    track: bool = True,
    overrides: dict[str, Any] | None = None,
) -> InProcessOutcome:
    """Preprocess → train → evaluate + gate → embed → upsert in this process, tracked in MLflow.

    Without ``track`` (no MLflow), the gate has no champion history and picks the better candidate.
    """
    work = settings.work_dir / category.name
    tracker = None
    run = None
    if track:
        tracker = Tracker.from_settings(settings)
        run = tracker.run(tracker.start_run(category.name, tags={"visearch.runner": "in_process"}))
    with run.failing() if run else nullcontext():
        params = category.train.with_overrides(overrides)
        manifest, _ = run_preprocess(
            settings, store, category, work / MANIFEST, params=params, show_progress=show_progress, run=run
        )
        trained = train_candidates(
            settings,
            store,
            category,
            manifest.parent,
            work / TRAINED,
            work / BASELINE,
            run=run,
            show_progress=show_progress,
        )
        outcome = evaluate_stage(
            settings,
            store,
            category,
            manifest.parent,
            trained.model_dir,
            work / BASELINE,
            work / EVALUATION,
            work / CHAMPION,
            tracker=tracker,
            run=run,
            show_progress=show_progress,
        )
        embeddings = run_embed(
            settings,
            store,
            category,
            manifest.parent,
            outcome.champion_dir,
            work / output_name(None),
            show_progress=show_progress,
        )
        result = run_upsert(settings, store, category, manifest.parent, outcome.champion_dir, embeddings, run=run)
    if run:
        run.end()
    return InProcessOutcome(
        manifest,
        dict(outcome.report),
        result.collection,
        result.count,
        outcome.decision.reason,
        run.run_id if run else None,
    )
