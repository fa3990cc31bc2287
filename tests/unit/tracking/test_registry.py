"""The registry on a real SQLite store: registry dedupe, champion alias, rejected marks, model files."""

from __future__ import annotations

from pathlib import Path

import pytest

from visearch.evaluate import flatten_report
from visearch.model import copy_model
from visearch.settings import Settings
from visearch.tracking import CHAMPION, REJECTED_TAG, VERSION_TAG, Tracker, model_name


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker.from_settings(Settings(visearch_home=tmp_path / "home", _env_file=None))


def fake_model(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(f'{{"version": "{version}"}}')
    (directory / "trunk.pth").write_bytes(b"trunk")
    (directory / "embedder.pth").write_bytes(b"embedder")
    (directory / "checkpoint.pt").write_bytes(b"not a model file")
    return directory


def test_run_registry_and_champion_round_trip(
    tracker: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory (MLflow's ./mlruns default)
    assert tracker.champion("cat") is None

    run = tracker.run(tracker.start_run("cat"))
    run.log_params({"epochs": 3, "embedder_layers": [512, 128]})
    run.log_params({"epochs": 3, "lr": 0.1})  # a resumed step logs the same params again: no error
    for epoch, loss in enumerate([0.5, 0.4]):
        run.log_metric("loss", loss, step=epoch)
    run.log_metrics(flatten_report({"tuned": {"version": "v1", "in_domain": {"precision_at_1": 0.9}}}))
    # A logged model with the files where a pyfunc keeps them (visearch.mlflow_model; tested there).
    copy_model(fake_model(tmp_path / "model", "v1"), tmp_path / "logged" / "artifacts")
    model_id = tracker.log_model(run.run_id, "model", tmp_path / "logged", {VERSION_TAG: "v1"})

    first = tracker.register("cat", run.run_id, model_id, "v1", {"visearch.candidate": "tuned"})
    again = tracker.register("cat", run.run_id, model_id, "v1")
    assert again == first  # one registry version per content hash: re-runs create no duplicates
    tracker.set_champion("cat", first)
    run.end()

    data = tracker.client.get_run(run.run_id).data
    assert data.params["embedder_layers"] == "512,128" and data.params["lr"] == "0.1"
    assert [m.value for m in tracker.client.get_metric_history(run.run_id, "loss")] == [0.5, 0.4]
    assert data.metrics["tuned.in_domain.precision_at_1"] == 0.9
    assert data.tags["visearch.category"] == "cat"

    champion = tracker.champion("cat")
    assert champion is not None and champion.model_version == "v1" and champion.run_id == run.run_id
    assert champion.model_id == model_id and champion.source == f"models:/{model_id}"
    version = tracker.client.get_model_version_by_alias(model_name("cat"), CHAMPION)
    assert version.tags[VERSION_TAG] == "v1"
    files = tracker.download(champion, tmp_path / "download")
    assert sorted(p.name for p in files.iterdir()) == ["embedder.pth", "meta.json", "trunk.pth"]
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "home" / "mlartifacts").is_dir()


def test_rejected_models_are_marked_once_registered(tracker: Tracker, tmp_path: Path) -> None:
    assert tracker.rejected("cat") == frozenset() and tracker.find_version("cat", "v1") is None  # no model yet
    run = tracker.run(tracker.start_run("cat"))
    copy_model(fake_model(tmp_path / "model", "v1"), tmp_path / "logged" / "artifacts")
    registered = {}
    for version in ("v1", "v2"):
        model_id = tracker.log_model(run.run_id, "model", tmp_path / "logged", {VERSION_TAG: version})
        registered[version] = tracker.register("cat", run.run_id, model_id, version)
    assert tracker.find_version("cat", "v2") == registered["v2"] != registered["v1"]

    tracker.reject("cat", "v1", "rolled back by ops")
    tracker.reject("cat", "never-registered", "no such model: nothing to mark")
    assert tracker.rejected("cat") == frozenset({"v1"})
    tags = tracker.client.get_model_version(model_name("cat"), registered["v1"]).tags
    assert tags[REJECTED_TAG] == "rolled back by ops"
