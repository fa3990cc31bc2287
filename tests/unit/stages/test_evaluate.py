"""The evaluate stage's record of a run, and a reused model's run: what MLflow's Compare and the dashboard show.

On the indexed home (the tiny category through every stage in process, tracked in SQLite MLflow).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY, TINY_CLASSES, copy_home
from visearch.categories import load_registry
from visearch.data.manifest import load_manifest
from visearch.retrieval_grid import QUERIES, TOP_K
from visearch.settings import Settings
from visearch.stages.evaluate import CONFUSION, GRID, PER_CLASS, TABLE
from visearch.stages.folders import BASELINE, EVALUATION, MANIFEST
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import TRAINED_PARAMS, train_candidates
from visearch.storage import LocalStore
from visearch.tracking import Tracker, experiment_name
from visearch.train_params import TrainParams


def only_run(tracker: Tracker) -> str:
    """The id of the indexed home's one run (the in-process pipeline's)."""
    experiment = tracker.client.get_experiment_by_name(experiment_name(TINY))
    (run,) = tracker.client.search_runs([experiment.experiment_id])
    return str(run.info.run_id)


def test_evaluation_writes_the_table_grid_per_class_metrics_and_confusion_and_logs_them(
    indexed_home: Settings,
) -> None:
    folder = indexed_home.work_dir / TINY / EVALUATION
    report = json.loads((folder / "report.json").read_text())
    gate, served = report["gate"], report["gate"]["serve"]
    manifest = load_manifest(indexed_home.work_dir / TINY / MANIFEST)

    table = (folder / TABLE).read_text()
    for model in ("tuned (fine-tuned)", "baseline (frozen trunk)"):
        assert re.search(rf"^\| {re.escape(model)} \| `{report[model.split()[0]]['version']}` \|", table, re.M)
    assert f"**Why:** {gate['reason']}" in table and "**Decision: promoted" in table

    heldout = int((manifest["split"] == "heldout").sum())
    grid = (folder / GRID).read_text()
    rows = re.findall(r'<tr class="query-row">(.*?)</tr>', grid)
    assert len(rows) == min(QUERIES, heldout)  # the in-domain queries: held-out images of training classes
    assert all(row.count('src="data:image/jpeg;base64,') == 1 + TOP_K for row in rows)
    assert served in grid.split("</h2>")[0]

    per_class = json.loads((folder / PER_CLASS).read_text())
    assert set(per_class) == set(TINY_CLASSES)  # training classes in-domain, held-out classes class-disjoint
    # Per-query averages: the classes' MAP@R weighted by their queries give the served model's MAP@R.
    for question, classes in (("in_domain", "heldout"), ("class_disjoint", "test")):
        names = set(manifest.loc[manifest["split"] == classes, "class"])
        weighted = sum(per_class[c]["map_at_r"] * per_class[c]["queries"] for c in names)
        overall = report[served][question]["mean_average_precision_at_r"]
        assert weighted / sum(per_class[c]["queries"] for c in names) == pytest.approx(overall, abs=2e-3)

    confusion = pd.read_csv(folder / CONFUSION)
    queries = manifest["split"].isin(["heldout", "test"]).groupby(manifest["class"]).sum()
    assert confusion.groupby("query_class")["count"].sum().to_dict() == (queries * TOP_K).to_dict()

    tracker = Tracker.from_settings(indexed_home)
    run_id = only_run(tracker)
    metrics = tracker.client.get_run(run_id).data.metrics
    for name, values in per_class.items():
        assert metrics[f"class.{name}.map_at_r"] == values["map_at_r"]
        assert metrics[f"class.{name}.precision_at_1"] == values["precision_at_1"]
    logged = {Path(f.path).name for f in tracker.client.list_artifacts(run_id, "evaluation")}
    assert {TABLE, GRID, PER_CLASS, CONFUSION, "report.json", "embedding_map.png"} <= logged


def test_a_run_that_reuses_a_model_logs_its_training_params_and_curves_and_names_the_run_that_trained_it(
    indexed_home: Settings, tmp_path: Path
) -> None:
    settings = copy_home(indexed_home, tmp_path / "home")
    store = LocalStore(settings.objects_dir)
    category = load_registry(settings.visearch_categories).get(TINY)
    tracker = Tracker.from_settings(settings)
    trained_by = only_run(tracker)
    run = tracker.run(tracker.start_run(TINY))
    manifest, _ = run_preprocess(settings, store, category, tmp_path / MANIFEST, show_progress=False, run=run)

    result = train_candidates(
        settings, store, category, manifest.parent, tmp_path / "model", tmp_path / BASELINE, run=run
    )

    trained, reused = (tracker.client.get_run(r).data for r in (trained_by, run.run_id))
    assert reused.tags["train.reused"] == result.version == trained.params["model_version"]
    assert reused.tags["train.trained_by_run"] == trained_by and trained_by in reused.tags["mlflow.note.content"]
    training = [name for name in trained.params if name in TrainParams.model_fields or name in TRAINED_PARAMS]
    assert len(training) == len(TrainParams.model_fields) + len(TRAINED_PARAMS)
    assert {k: reused.params.get(k) for k in training} == {k: trained.params[k] for k in training}
    history = {
        r: [(m.step, m.value) for m in tracker.client.get_metric_history(r, "loss")] for r in (trained_by, run.run_id)
    }
    assert history[run.run_id] == history[trained_by] and len(history[trained_by]) == category.train.epochs
