"""The train component: it trains with the parameters the preprocess step resolved from the run's (kfp's
unset values keep the registry's) and records the model's metadata; the frozen trunk comes along as the
second candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.components.fakes import FakeArtifact
from tests.helpers import TINY
from visearch.model import read_spec
from visearch.settings import Settings
from visearch.tracking import Tracker


def test_train_uses_the_run_parameters_preprocess_resolved_and_records_the_model(
    steps: Any,
    step_home: Settings,
    registry,
    store,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    category = registry.get(TINY)
    tracker = Tracker.from_settings(step_home)
    manifest = FakeArtifact(tmp_path / "manifest")
    run_id = steps.preprocess.python_func(
        category=TINY,
        manifest=manifest,
        data_report=FakeArtifact(tmp_path / "data_report.md"),
        embedder_layers="16",
        max_steps=2,
    )
    model, baseline = FakeArtifact(tmp_path / "model"), FakeArtifact(tmp_path / "baseline")

    steps.train.python_func(category=TINY, manifest=manifest, run_id=run_id, model=model, baseline=baseline)

    spec = read_spec(Path(model.path))
    assert spec.embedder_layers == [16] and spec.input_size == category.train.input_size  # given; -1 kept
    assert model.metadata["version"] == spec.version != ""
    assert len(model.metadata["epoch_losses"]) == category.train.epochs
    assert not (Path(model.path) / "checkpoint.pt").exists()  # only the model files are the output
    assert (Path(model.path) / "model.onnx").is_file() and (Path(baseline.path) / "model.onnx").is_file()
    assert read_spec(Path(baseline.path)).version != spec.version
    params = tracker.client.get_run(run_id).data.params
    assert (params["embedder_layers"], params["max_steps"]) == ("16", "2")
    assert (params["epochs"], params["batch_size"]) == (str(category.train.epochs), str(category.train.batch_size))
