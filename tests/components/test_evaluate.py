"""The evaluate component: the metrics it logs, and the champion it names in its output's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.components.fakes import FakeArtifact, FakeMetrics
from tests.helpers import TINY
from visearch.gate import FROZEN, TUNED
from visearch.model import read_spec
from visearch.settings import Settings
from visearch.tracking import Tracker


def evaluate(steps: Any, work: Path, run_id: str, out: Path) -> tuple[str, FakeMetrics, FakeArtifact, FakeArtifact]:
    """The component on the indexed home's manifest and its two trained candidates."""
    metrics, report, champion = (
        FakeMetrics(out / "metrics"),
        FakeArtifact(out / "report"),
        FakeArtifact(out / "champion"),
    )
    reason = steps.evaluate.python_func(
        category=TINY,
        manifest=FakeArtifact(work / "manifest"),
        run_id=run_id,
        model=FakeArtifact(work / "train" / "model"),
        baseline=FakeArtifact(work / "baseline"),
        metrics=metrics,
        report=report,
        champion=champion,
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
    registered = tracker.champion(TINY)
    assert registered is not None and registered.model_version == champion.metadata["version"]

    # The same candidates again: the champion is kept, and the metadata says nothing was promoted.
    reason, metrics, _, kept = evaluate(steps, work, tracker.start_run(TINY), tmp_path / "again")
    assert metrics.metrics["gate.promoted"] == 0.0
    assert kept.metadata == {"version": champion.metadata["version"], "promoted": ""}
    assert read_spec(Path(kept.path)).version == champion.metadata["version"]
