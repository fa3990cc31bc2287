"""The registered model is a real MLflow model: a pyfunc that embeds images as the search path does.

On the indexed tiny home (a real SQLite MLflow store, real training): the champion loads with
``mlflow.pyfunc.load_model("models:/visearch-tiny@champion")`` and gives the vectors the service
computes; both candidates are logged models with a signature and an input example; the manifest
is the run's dataset; the experiment opens in MLflow's training-runs view.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY
from visearch.categories import load_registry
from visearch.index import open_index
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.storage import LocalStore
from visearch.tracking import (
    CANDIDATE_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    VERSION_TAG,
    Tracker,
    experiment_name,
    model_name,
)


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    store = LocalStore(indexed_home.objects_dir)
    engine = SearchEngine(
        indexed_home, load_registry(indexed_home.visearch_categories), store, open_index(indexed_home)
    )
    yield engine
    engine.close()  # embedded Qdrant: free the folder for the next module


@pytest.fixture
def mlflow_uri(indexed_home: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's fluent API (``models:/`` URIs) on the indexed home's store, for this test only."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", indexed_home.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", indexed_home.tracking_uri)
    return indexed_home.tracking_uri


def stored_images(engine: SearchEngine, limit: int = 12) -> list[bytes]:
    return [engine.store.get_bytes(r.image_key) for r in engine.examples(TINY, limit=limit)]


@pytest.mark.slow  # the indexed home trains a model
def test_champion_pyfunc_gives_the_search_paths_vectors(engine: SearchEngine, mlflow_uri: str) -> None:
    import mlflow.pyfunc

    from visearch.mlflow_model import IMAGE_COLUMN

    data = stored_images(engine)
    model = mlflow.pyfunc.load_model(f"models:/{model_name(TINY)}@champion")
    got = model.predict(pd.DataFrame({IMAGE_COLUMN: data}))
    expected = engine.embed_images(TINY, [engine.decode(d) for d in data])

    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.shape == expected.shape == (len(data), engine.model_for(TINY).spec.embedding_dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # JSON transport: base64 text in the same column gives the same vectors.
    text = [base64.b64encode(d).decode() for d in data[:3]]
    np.testing.assert_allclose(model.predict(pd.DataFrame({IMAGE_COLUMN: text})), got[:3], atol=1e-6)
    # The champion is the model of the live collection: the one the service reads from the store.
    champion = Tracker.from_settings(engine.settings).champion(TINY)
    assert champion is not None and champion.model_version == engine.live_version(TINY).model_version


@pytest.mark.slow  # the indexed home trains a model
def test_every_candidate_is_a_logged_model_with_signature_and_example(indexed_home: Settings) -> None:
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    from visearch.mlflow_model import IMAGE_COLUMN

    tracker = Tracker.from_settings(indexed_home)
    client = tracker.client
    versions = client.search_model_versions(f"name='{model_name(TINY)}'")
    assert sorted(v.tags[CANDIDATE_TAG] for v in versions) == ["baseline", "tuned"]
    assert len({v.tags[VERSION_TAG] for v in versions}) == len(versions)  # one version per model
    (run_id,) = {v.run_id for v in versions}
    outputs = {o.model_id for o in client.get_run(run_id).outputs.model_outputs}

    for version in versions:
        assert version.source.startswith("models:/m-")  # a logged model, not a folder of a run
        model_id = version.source.removeprefix("models:/")
        assert model_id in outputs  # the run page lists the model
        logged = client.get_logged_model(model_id)
        assert logged.name in ("model", "baseline") and logged.status.to_int() == 2  # READY
        assert logged.source_run_id == run_id and logged.tags[VERSION_TAG] == version.tags[VERSION_TAG]
        assert json.loads(logged.tags["mlflow.modelVersions"]) == [
            {"name": model_name(TINY), "version": version.version}
        ]
        local = Path(download_artifacts(artifact_uri=logged.artifact_location, tracking_uri=indexed_home.tracking_uri))
        described = Model.load(str(local / "MLmodel"))
        assert "python_function" in described.flavors
        assert described.model_id == model_id and described.run_id == run_id
        assert described.signature is not None
        assert described.signature.inputs.to_dict() == [{"type": "binary", "name": IMAGE_COLUMN, "required": True}]
        assert described.signature.outputs.to_dict()[0]["tensor-spec"]["dtype"] == "float32"
        assert described.saved_input_example_info is not None
        assert (local / "input_example.json").is_file()
        files = sorted(p.name for p in (local / "artifacts").iterdir())
        assert files == ["embedder.pth", "meta.json", "model.onnx", "trunk.pth"]
        assert json.loads((local / "artifacts" / "meta.json").read_text())["version"] == version.tags[VERSION_TAG]


@pytest.mark.slow  # the indexed home trains a model
def test_registration_is_idempotent(indexed_home: Settings, tmp_path: Path) -> None:
    """Registering a model that is registered already neither logs nor registers anything new."""
    from visearch.gate import register_candidate

    tracker = Tracker.from_settings(indexed_home)
    champion = tracker.champion(TINY)
    assert champion is not None and champion.model_id
    files = tracker.download(champion, tmp_path / "champion")
    assert sorted(p.name for p in files.iterdir()) == ["embedder.pth", "meta.json", "model.onnx", "trunk.pth"]
    experiment_id = tracker.experiment_id(TINY)
    before = len(tracker.client.search_logged_models([experiment_id]))
    run = tracker.run(champion.run_id or "")
    again = register_candidate(tracker, run, TINY, "tuned", files)
    assert again == champion.registry_version
    assert len(tracker.client.search_logged_models([experiment_id])) == before
    assert len(tracker.client.search_model_versions(f"name='{model_name(TINY)}'")) == 2


@pytest.mark.slow  # the indexed home trains a model
def test_the_manifest_is_the_runs_dataset(indexed_home: Settings) -> None:
    tracker = Tracker.from_settings(indexed_home)
    champion = tracker.champion(TINY)
    assert champion is not None and champion.run_id
    run = tracker.client.get_run(champion.run_id)
    (entry,) = run.inputs.dataset_inputs
    dataset = entry.dataset
    assert dataset.name == TINY and dataset.digest == run.data.params["data_hash"]
    assert dataset.source_type == "local"
    source = json.loads(dataset.source)["uri"]
    assert source == (indexed_home.objects_dir / "datasets" / TINY).resolve().as_uri()
    assert json.loads(dataset.profile)["num_rows"] == int(run.data.params["dataset_size"])
    columns = {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
    assert {"file", "class", "label", "split"} <= columns
    assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == "training"


@pytest.mark.slow  # the indexed home trains a model
def test_experiment_opens_in_the_training_runs_view(indexed_home: Settings, tmp_path: Path) -> None:
    tracker = Tracker.from_settings(indexed_home)
    experiment = tracker.client.get_experiment_by_name(experiment_name(TINY))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"

    # An experiment made before the tag existed gets it the next time a run starts in it.
    other = Tracker.from_settings(Settings(visearch_home=tmp_path / "home", _env_file=None))
    experiment_id = other.client.create_experiment(experiment_name("old"))
    assert EXPERIMENT_KIND_TAG not in other.client.get_experiment(experiment_id).tags
    other.start_run("old")
    assert other.client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_version_registered_as_a_run_folder_still_downloads(tmp_path: Path) -> None:
    """Registry versions from before the pyfunc (source = the run's folder of files) keep working."""
    from visearch.model import model_files
    from visearch.tracking import Champion

    tracker = Tracker.from_settings(Settings(visearch_home=tmp_path / "home", _env_file=None))
    run = tracker.run(tracker.start_run("old"))
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("trunk.pth", "embedder.pth", "meta.json"):
        (folder / name).write_bytes(name.encode())
    run.log_files(model_files(folder), "model")
    source = f"{tracker.client.get_run(run.run_id).info.artifact_uri}/model"
    files = tracker.download(Champion("1", "v0", run.run_id, source), tmp_path / "download")
    assert sorted(p.name for p in files.iterdir()) == ["embedder.pth", "meta.json", "trunk.pth"]
