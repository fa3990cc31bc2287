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
from visearch.data.manifest import image_paths, load_manifest, sample_per_class
from visearch.evaluate import (
    class_confusion,
    evaluate_models,
    flatten_report,
    per_class_metrics,
    plot_embedding_map,
    questions,
)
from visearch.gate import CURRENT, FROZEN, TUNED, GateDecision, GateOutcome, decide, register_candidate
from visearch.model import copy_model, read_spec
from visearch.model_files import store_key
from visearch.reports import QUESTIONS, evaluation_markdown
from visearch.retrieval_grid import TOP_K, grid_html, sample_rows
from visearch.settings import Settings
from visearch.stages.preprocess import read_params
from visearch.storage import ObjectStore
from visearch.tracking import Champion, TrackedRun, Tracker

log = logging.getLogger(__name__)

CANDIDATES = (TUNED, FROZEN)
# What each model of the report is, in the order the evaluation table lists them.
LABELS = {TUNED: "fine-tuned", FROZEN: "frozen trunk", CURRENT: "current champion"}
REPORT = "report.json"
TABLE = "evaluation.md"  # the evaluation table and the gate's decision (Markdown)
GRID = "retrieval_grid.html"  # held-out queries and their top-k results (self-contained HTML)
PER_CLASS = "per_class.json"
CONFUSION = "confusion.csv"  # which classes each class's queries retrieve


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
    category: str, manifest_dir: Path, run_id: str, candidates: tuple[Path, Path], report_dir: Path, champion_dir: Path
) -> GateOutcome:
    """The pipeline entry: ``evaluate_stage`` of the (fine-tuned, frozen) candidates in the category's MLflow run."""
    from visearch.stages.tracked import tracked_step

    with tracked_step(run_id) as (ctx, run):
        where = ctx.for_stage(category)
        return evaluate_stage(
            *where, manifest_dir, *candidates, report_dir, champion_dir, tracker=ctx.tracker(), run=run
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

    Writes the evaluation's files (``_write_report``) to ``report_dir`` and the model to index (the
    new or the kept champion) to ``champion_dir``. With a tracker, the metrics (per class too) and
    the files go to the run, every candidate is registered once per content hash, the ``champion``
    alias moves only when the gate says so, and registry versions beyond the retention are pruned. Every model is scored on the same rows: at
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
    per_class = _write_report(settings, store, category, report_dir, report, decision, vectors, manifest, every_row)
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
        run.log_metrics({**flatten_report(report), "gate.promoted": float(decision.promoted is not None), **per_class})
        for name in (REPORT, "embedding_map.png", TABLE, GRID, PER_CLASS, CONFUSION):
            if (report_dir / name).is_file():
                run.log_artifact(report_dir / name, "evaluation")
        # Like the index's retention (upsert): old registry versions go, never the champion or one in use.
        pruned = tracker.prune_versions(
            category.name, settings.keep_index_versions, in_use=published_versions(store, category.name)
        )
        run.set_tags(
            {
                "gate.decision": "promoted" if decision.promoted else "kept",
                "gate.reason": decision.reason,
                "gate.champion_model_version": champion_version,
                "gate.champion_registry_version": registry_version or "",
                "gate.evaluated_images": f"{len(manifest)} of {len(every_row)}",
                "registry.pruned": ",".join(pruned),
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


def published_versions(store: ObjectStore, category: str) -> set[str]:
    """The model versions with files in the object store: every one a kept index version uses (see ``prune_models``)."""
    prefix = store_key(category, "").rstrip("/") + "/"
    return {key.removeprefix(prefix).split("/", 1)[0] for key in store.list(prefix)}


def metric_name(text: str) -> str:
    """A class name as part of an MLflow metric key (letters, digits, ``_ - . space`` only)."""
    return "".join(c if c.isalnum() or c in "_-. " else "_" for c in text)


def _write_report(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    report_dir: Path,
    report: dict[str, Any],
    decision: GateDecision,
    vectors: dict[str, np.ndarray],
    manifest: pd.DataFrame,
    every_row: pd.DataFrame,
) -> dict[str, float]:
    """Every file of the evaluation in ``report_dir``; returns the served model's per-class metrics (MLflow keys).

    ``report.json`` (metrics + decision), ``embedding_map.png`` (with enough held-out-class images),
    ``evaluation.md``, ``retrieval_grid.html``, ``per_class.json`` and ``confusion.csv``, the last
    three of the model that serves.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT).write_text(json.dumps({**report, "gate": decision.to_dict()}, indent=2), encoding="utf-8")
    served = _served(report, vectors, decision.serve)
    per_class = per_class_metrics(vectors[served], manifest)
    (report_dir / PER_CLASS).write_text(json.dumps(per_class, indent=2), encoding="utf-8")
    class_confusion(vectors[served], manifest, k=TOP_K).to_csv(report_dir / CONFUSION, index=False)
    table = evaluation_markdown(
        report,
        decision.to_dict(),
        labels=LABELS,
        title=f"Evaluation of {category.name}",
        evaluated=f"{len(manifest)} of {len(every_row)}",
        per_class=per_class,
    )
    (report_dir / TABLE).write_text(table, encoding="utf-8")
    _write_grid(settings, store, category, report_dir / GRID, report, decision.serve, vectors[served], manifest)
    test = (manifest["split"] == "test").to_numpy()
    if test.sum() > 2:
        shown = {f"{name} ({report[name]['version']})": vectors[name][test] for name in vectors}
        classes = manifest["class"].astype(str).to_numpy()[test].tolist()
        plot_embedding_map(report_dir / "embedding_map.png", shown, manifest["label"].to_numpy()[test], classes)
    return {
        f"class.{metric_name(name)}.{metric}": value
        for name, metrics in per_class.items()
        for metric, value in metrics.items()
        if metric != "queries"
    }


def _served(report: dict[str, Any], vectors: dict[str, np.ndarray], serve: str) -> str:
    """The model whose vectors stand for ``serve`` (a champion that is one of the candidates has none of its own)."""
    if serve in vectors:
        return serve
    return next(name for name in vectors if report[name]["version"] == report[serve]["version"])


def _write_grid(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    path: Path,
    report: dict[str, Any],
    serve: str,
    vectors: np.ndarray,
    manifest: pd.DataFrame,
) -> Path:
    """The retrieval grid of the served model on the first question (in-domain when there is one)."""
    question = questions(manifest)[0]
    labels = manifest["label"].to_numpy(dtype=np.int64)
    rows = sample_rows(vectors, labels, question.queries, question.reference, seed=category.train.seed)
    used = sorted({row.query for row in rows} | {hit for row in rows for hit, _ in row.hits})
    files = dict(zip(used, image_paths(store, settings, manifest["key"].iloc[used].tolist()), strict=True))
    classes = manifest["class"].astype(str).tolist()
    images = [files.get(i, Path()) for i in range(len(manifest))]
    title = f"{category.name}: what {serve} ({report[serve]['version']}) retrieves"
    subtitle = f"{len(rows)} queries, {QUESTIONS[question.name]}; top {TOP_K} results, wrong class marked ✗."
    path.write_text(grid_html(rows, classes, images, title=title, subtitle=subtitle), encoding="utf-8")
    return path
