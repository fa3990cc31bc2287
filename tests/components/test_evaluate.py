"""The evaluate component: the metrics it logs, and the champion it names in its output's metadata."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kfp import compiler

from tests.components.fakes import FakeArtifact, FakeMetrics
from tests.helpers import TINY
from visearch.data.manifest import load_manifest
from visearch.gate import FROZEN, TUNED
from visearch.model import read_spec
from visearch.retrieval_grid import QUERIES, TOP_K
from visearch.settings import Settings
from visearch.tracking import Tracker


def evaluate(steps: Any, work: Path, run_id: str, out: Path) -> tuple[str, FakeMetrics, FakeArtifact, FakeArtifact]:
    """The component on the indexed home's manifest and its two trained candidates."""
    metrics, report, champion = (
        FakeMetrics(out / "metrics"),
        FakeArtifact(out / "report"),
        FakeArtifact(out / "champion"),
    )
    # kfp hands an output artifact a file path in a folder of its own
    table, grid = FakeArtifact(out / "evaluation" / "table"), FakeArtifact(out / "grid" / "retrieval_grid")
    reason = steps.evaluate.python_func(
        category=TINY,
        manifest=FakeArtifact(work / "manifest"),
        run_id=run_id,
        model=FakeArtifact(work / "train" / "model"),
        baseline=FakeArtifact(work / "baseline"),
        metrics=metrics,
        report=report,
        champion=champion,
        evaluation=table,
        retrieval_grid=grid,
    )
    return reason, metrics, report, champion


def test_evaluate_logs_metrics_and_names_the_champion(
    steps: Any, step_home: Settings, indexed_home: Settings, tmp_path: Path
) -> None:
    work = indexed_home.work_dir / TINY  # read only: its manifest and candidates; the step writes to step_home
    tracker = Tracker.from_settings(step_home)
    reason, metrics, report, champion = evaluate(steps, work, tracker.start_run(TINY), tmp_path / "first")

    assert reason.startswith("first model of this category")
    for model in (TUNED, FROZEN):
        for evaluation in ("in_domain", "class_disjoint"):
            assert f"{model}.{evaluation}.mean_average_precision_at_r" in metrics.metrics
    assert metrics.metrics["gate.promoted"] == 1.0
    promoted = champion.metadata["promoted"]
    candidate = work / "train" / "model" if promoted == TUNED else work / "baseline"
    assert promoted in (TUNED, FROZEN)
    assert champion.metadata["version"] == read_spec(Path(champion.path)).version == read_spec(candidate).version
    assert (Path(report.path) / "report.json").is_file()
    # The dashboard's Markdown: a row per model, the decision and why; its HTML: the retrieval grid.
    table = (tmp_path / "first" / "evaluation" / "table").read_text()
    assert re.search(rf"^\| {TUNED} \(fine-tuned\) \| `{read_spec(work / 'train' / 'model').version}` \|", table, re.M)
    assert re.search(rf"^\| {FROZEN} \(frozen trunk\) \| `{read_spec(work / 'baseline').version}` \|", table, re.M)
    assert f"**Decision: promoted `{promoted}`.**" in table and f"**Why:** {reason}" in table
    rows = re.findall(r'<tr class="query-row">(.*?)</tr>', (tmp_path / "first" / "grid" / "retrieval_grid").read_text())
    heldout = (load_manifest(work / "manifest")["split"] == "heldout").sum()
    assert len(rows) == min(QUERIES, heldout) and all(row.count('src="data:image/') == 1 + TOP_K for row in rows)
    registered = tracker.champion(TINY)
    assert registered is not None and registered.model_version == champion.metadata["version"]

    # The same candidates again: the champion is kept, and the metadata says nothing was promoted.
    reason, metrics, _, kept = evaluate(steps, work, tracker.start_run(TINY), tmp_path / "again")
    table = (tmp_path / "again" / "evaluation" / "table").read_text()
    assert metrics.metrics["gate.promoted"] == 0.0
    assert kept.metadata == {"version": champion.metadata["version"], "promoted": ""}
    assert "**Decision: kept (`champion` serves).**" in table and f"**Why:** {reason}" in table
    assert read_spec(Path(kept.path)).version == champion.metadata["version"]


def test_the_dashboard_gets_a_markdown_table_and_an_html_grid_from_evaluate_and_markdown_from_preprocess(
    steps: Any, tmp_path: Path
) -> None:
    """The compiled components declare the output types the KFP UI renders as visualisations."""
    import yaml

    declared = {}
    for name in ("evaluate", "preprocess"):
        compiler.Compiler().compile(getattr(steps, name), str(tmp_path / f"{name}.yaml"))
        spec = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
        outputs = spec["root"]["outputDefinitions"]["artifacts"]
        declared[name] = {key: value["artifactType"]["schemaTitle"] for key, value in outputs.items()}
    assert declared["evaluate"] == {
        "metrics": "system.Metrics",
        "report": "system.Artifact",
        "champion": "system.Model",
        "evaluation": "system.Markdown",
        "retrieval_grid": "system.HTML",
    }
    assert declared["preprocess"] == {"manifest": "system.Dataset", "data_report": "system.Markdown"}
