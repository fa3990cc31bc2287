"""The preprocess component: writes the manifest, starts the category's MLflow run and returns its id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.components.fakes import FakeArtifact
from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS
from visearch.data.manifest import load_manifest
from visearch.settings import Settings
from visearch.tracking import Tracker


def test_preprocess_returns_the_run_id_the_later_steps_log_to(steps: Any, step_home: Settings, tmp_path: Path) -> None:
    manifest, data_report = FakeArtifact(tmp_path / "manifest"), FakeArtifact(tmp_path / "report" / "data_report")
    run_id = steps.preprocess.python_func(
        category=TINY, manifest=manifest, data_report=data_report, pipeline_run="kfp-run-7"
    )

    frame = load_manifest(Path(manifest.path))
    assert len(frame) == len(TINY_CLASSES) * TINY_PER_CLASS
    assert (Path(manifest.path) / "report.json").is_file()
    # The dashboard's view of it: the data report as Markdown.
    markdown = Path(data_report.path).read_text()
    assert f"**{len(frame)} of {len(frame)} rows kept, 0 dropped.**" in markdown
    assert all(f"| {name} | {TINY_PER_CLASS} |" in markdown for name in TINY_CLASSES)
    assert "- in-domain: yes" in markdown and "- class-disjoint: yes" in markdown
    run = Tracker.from_settings(step_home).client.get_run(run_id)
    assert run.info.status == "RUNNING"  # the upsert step ends it
    assert run.data.tags["visearch.category"] == TINY and run.data.tags["kfp.run"] == "kfp-run-7"
    assert run.data.params["dataset_size"] == str(len(frame))


def test_preprocess_passes_the_split_on_and_minus_one_keeps_the_registry_value(
    steps: Any, step_home: Settings, tmp_path: Path
) -> None:
    default, wider = FakeArtifact(tmp_path / "default"), FakeArtifact(tmp_path / "wider")
    reports = FakeArtifact(tmp_path / "default.md"), FakeArtifact(tmp_path / "wider.md")
    first = steps.preprocess.python_func(category=TINY, manifest=default, data_report=reports[0])  # split: 0.6
    second = steps.preprocess.python_func(category=TINY, manifest=wider, data_report=reports[1], split=0.8)

    def classes(artifact: FakeArtifact, split: str) -> int:
        frame = load_manifest(Path(artifact.path))
        return int(frame.loc[frame["split"] == split, "class"].nunique())

    assert (classes(default, "test"), classes(wider, "test")) == (2, 1)  # of five classes
    assert first != second
    assert "kfp.run" not in Tracker.from_settings(step_home).client.get_run(first).data.tags
