"""Run logging on a real SQLite store: experiments, run tags, batched params and metrics, datasets, files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from visearch.settings import Settings
from visearch.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker, experiment_name


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker.from_settings(Settings(visearch_home=tmp_path / "home", _env_file=None))


def test_a_run_lands_in_the_category_experiment_with_its_tags(
    tracker: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISEARCH_GIT_COMMIT", "abc123")
    run_id = tracker.start_run("cat", run_name="first", tags={"step": "train"})
    run = tracker.client.get_run(run_id)
    experiment = tracker.client.get_experiment(run.info.experiment_id)
    assert experiment.name == experiment_name("cat") and experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert experiment.artifact_location == f"{(tmp_path / 'home' / 'mlartifacts').as_uri()}/cat"
    assert run.info.run_name == "first"
    assert run.data.tags["visearch.category"] == "cat" and run.data.tags["step"] == "train"
    assert run.data.tags["mlflow.source.git.commit"] == "abc123"
    assert tracker.experiment_id("cat") == run.info.experiment_id  # found again, not created twice


def test_an_experiment_made_before_the_kind_tag_gets_it(tracker: Tracker) -> None:
    old = tracker.client.create_experiment(experiment_name("old"))
    assert tracker.experiment_id("old") == old
    assert tracker.client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_params_and_metrics_are_logged_in_batches(tracker: Tracker) -> None:
    run = tracker.run(tracker.start_run("cat"))
    params = {f"p{i:03d}": i for i in range(150)} | {"layers": (512, 128), "long": "x" * 7000}
    run.log_params(params)  # more than one batch of 100
    run.log_params({"p000": 0, "extra": True})  # a resumed step: logged ones are left alone
    logged = tracker.client.get_run(run.run_id).data.params
    assert len(logged) == 153 and logged["p149"] == "149" and logged["extra"] == "True"
    assert logged["layers"] == "512,128" and logged["long"] == "x" * 6000  # MLflow's limit on a param

    run.log_metrics({f"m{i:03d}": i / 2 for i in range(600)}, step=3)  # more than one batch of 500
    run.log_metric("loss", 0.25, step=1)
    metrics = tracker.client.get_run(run.run_id).data.metrics
    assert len(metrics) == 601 and metrics["m599"] == 299.5 and metrics["loss"] == 0.25
    assert [m.step for m in tracker.client.get_metric_history(run.run_id, "m000")] == [3]


def test_tags_files_and_dataset_of_a_run(tracker: Tracker, tmp_path: Path) -> None:
    run = tracker.run(tracker.start_run("cat"))
    run.set_tags({"visearch.images": 12, "visearch.ok": True})
    files = []
    for name in ("a.txt", "b.txt"):
        files.append(tmp_path / name)
        files[-1].write_text(name)
    run.log_files(files, "model")
    run.log_artifact(files[0])
    frame = pd.DataFrame({"file": ["boot/1.png", "bag/2.png"], "label": [0, 1]})
    run.log_dataset(frame, name="cat-train", digest="d4t4", source="s3://bucket/cat/meta.csv")
    run.end()

    logged = tracker.client.get_run(run.run_id)
    assert logged.data.tags["visearch.images"] == "12" and logged.data.tags["visearch.ok"] == "True"
    assert logged.info.status == "FINISHED"
    assert sorted(f.path for f in tracker.client.list_artifacts(run.run_id, "model")) == ["model/a.txt", "model/b.txt"]
    assert "a.txt" in {f.path for f in tracker.client.list_artifacts(run.run_id)}
    (dataset_input,) = logged.inputs.dataset_inputs
    assert (dataset_input.dataset.name, dataset_input.dataset.digest) == ("cat-train", "d4t4")
    assert [(t.key, t.value) for t in dataset_input.tags] == [("mlflow.data.context", "training")]


def test_failing_marks_the_run_failed(tracker: Tracker) -> None:
    run = tracker.run(tracker.start_run("cat"))
    with pytest.raises(ValueError), run.failing():
        raise ValueError("boom")
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"
