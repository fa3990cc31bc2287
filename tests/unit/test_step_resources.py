"""A cluster deployment: the compiled pipeline's resources, accelerator and retries; engines required; the registry at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY
from visearch.categories import load_registry
from visearch.errors import ConfigError, EngineNotConfiguredError
from visearch.settings import Settings
from visearch.step_resources import DEFAULT_RESOURCES, cluster_plan, quantity


def compiled_executors(registry_path: Path, tmp_path: Path, names: list[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    from pipelines.visearch_pipeline import compile_pipeline

    registry = load_registry(registry_path)
    output = compile_pipeline(
        tmp_path / "pipeline.yaml", "registry.example/visearch-train:1", [registry.get(n) for n in names]
    )
    spec, _platform = yaml.safe_load_all(output.read_text())
    return {name.removeprefix("exec-"): body["container"] for name, body in spec["deploymentSpec"]["executors"].items()}


def test_a_category_that_asks_for_a_gpu_gets_one_for_train_evaluate_and_embed(home: Settings, tmp_path: Path) -> None:
    path = home.visearch_categories
    assert path is not None
    raw = yaml.safe_load(path.read_text())
    for entry in raw["categories"]:
        if entry["name"] == TINY:
            entry["train"]["accelerator"] = {"nvidia.com/gpu": 1}
            entry["resources"] = {"train": {"memory": "12Gi", "memory_limit": "16Gi"}}
    path.write_text(yaml.safe_dump(raw))
    executors = compiled_executors(path, tmp_path, [TINY, "fashion-mnist"])
    for step in ("train", "evaluate", "embed"):
        accelerator = executors[step]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu" and int(accelerator["resourceCount"]) == 1
    for step in ("preprocess", "upsert"):
        assert "accelerator" not in executors[step]["resources"]
    assert executors["train"]["resources"]["resourceMemoryRequest"] == "12Gi"  # the category's override wins
    assert executors["embed"]["resources"]["resourceMemoryRequest"] == DEFAULT_RESOURCES["embed"].memory
    # Without that category the same compile requests no accelerator at all.
    plain = compiled_executors(path, tmp_path, ["fashion-mnist"])
    assert all("accelerator" not in body["resources"] for body in plain.values())


def test_every_step_has_requests_limits_and_retries_and_the_registry_volume(tmp_path: Path) -> None:
    from pipelines.visearch_pipeline import CATEGORIES_CONFIG_MAP, compile_pipeline

    registry = load_registry()
    output = compile_pipeline(tmp_path / "p.yaml", "img:1", registry.categories)
    spec, platform = yaml.safe_load_all(output.read_text())
    for body in spec["deploymentSpec"]["executors"].values():
        resources = body["container"]["resources"]
        assert {"resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"} <= set(resources)
    # Every task of every DAG (the category loop, the mode's condition, the embed fan-out) but the DAGs themselves.
    tasks = [
        task for component in spec["components"].values() for task in component.get("dag", {}).get("tasks", {}).values()
    ]
    steps = [task for task in tasks if task["componentRef"]["name"].removeprefix("comp-") in spec_steps(spec)]
    assert len(steps) == 7 and all(task["retryPolicy"]["maxRetryCount"] == 2 for task in steps)
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in kubernetes.values():
        assert any(volume["configMapName"] == CATEGORIES_CONFIG_MAP for volume in executor["configMapAsVolume"])


def spec_steps(spec: dict) -> set[str]:  # type: ignore[type-arg]
    """The names of the compiled spec's container steps (its executors)."""
    return {name.removeprefix("exec-") for name in spec["deploymentSpec"]["executors"]}


def test_quantities_and_conflicting_accelerators() -> None:
    assert quantity("500m") == 0.5 and quantity("4Gi") == 4 * 2**30 and quantity("2") == 2
    with pytest.raises(ConfigError, match="not a Kubernetes quantity"):
        quantity("lots")
    registry = load_registry()
    a = registry.get("shoes").model_copy(deep=True)
    b = registry.get("dogs").model_copy(deep=True)
    a.train.accelerator = {"nvidia.com/gpu": 1}
    b.train.accelerator = {"amd.com/gpu": 2}
    with pytest.raises(ConfigError, match="different accelerators"):
        cluster_plan([a, b])
    b.train.accelerator = {"nvidia.com/gpu": 2}
    assert cluster_plan([a, b]).accelerator == ("nvidia.com/gpu", 2)


@pytest.mark.parametrize(
    ("missing", "opener"),
    [("MINIO_HOST", "store"), ("QDRANT_URL", "index"), ("MLFLOW_TRACKING_URI", "tracker")],
)
def test_required_engines_never_fall_back_to_embedded_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str, opener: str
) -> None:
    from visearch.index import open_index
    from visearch.storage import make_store
    from visearch.tracking import Tracker

    settings = Settings(visearch_home=tmp_path, visearch_require_engines=True, _env_file=None)
    open_engine = {"store": make_store, "index": open_index, "tracker": Tracker.from_settings}[opener]
    with pytest.raises(EngineNotConfiguredError, match=f"^{missing} is not set"):
        open_engine(settings)
    assert not any(tmp_path.iterdir())  # nothing embedded was created
    # Inside a Kubeflow pod the same holds without the flag.
    monkeypatch.setenv("KFP_POD_NAME", "visearch-abc-123")
    assert Settings(visearch_home=tmp_path, _env_file=None).require_engines
    monkeypatch.delenv("KFP_POD_NAME")
    assert not Settings(visearch_home=tmp_path, _env_file=None).require_engines


def test_the_k8s_registry_config_map_starts_as_the_shipped_registry() -> None:
    root = Path(__file__).resolve().parents[2]
    shipped = yaml.safe_load((root / "src" / "visearch" / "categories.yaml").read_text())
    assert yaml.safe_load((root / "k8s" / "base" / "categories.yaml").read_text()) == shipped


def test_the_service_follows_a_registry_edited_in_place(home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import visearch.runtime as runtime_module
    from visearch.runtime import Runtime

    monkeypatch.setattr(runtime_module, "REGISTRY_CHECK_SECONDS", 0.0)
    path = home.visearch_categories
    assert path is not None
    runtime = Runtime(home)
    try:
        assert "added" not in runtime.run(lambda engine: engine.registry.names())
        raw = yaml.safe_load(path.read_text())
        raw["categories"].append({"name": "added", "title": "Added on the cluster"})
        path.write_text(yaml.safe_dump(raw))
        assert "added" in runtime.run(lambda engine: engine.registry.names())
        path.write_text("categories: [")  # a broken edit: the last good registry stays
        assert "added" in runtime.run(lambda engine: engine.registry.names())
    finally:
        runtime.close()


def test_the_device_setting_picks_the_cpu_here_and_refuses_a_missing_gpu(home: Settings) -> None:
    import torch

    from visearch.model import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="VISEARCH_DEVICE=cuda but torch sees no CUDA device"):
            resolve_device("cuda")
        import subprocess
        import sys

        from tests.helpers import env_for

        result = subprocess.run(
            [sys.executable, "-m", "visearch.cli", "preprocess", "-c", TINY],
            env=env_for(home),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        result = subprocess.run(
            [sys.executable, "-m", "visearch.cli", "train", "-c", TINY],
            env={**env_for(home), "VISEARCH_DEVICE": "cuda"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1 and "error: VISEARCH_DEVICE=cuda but torch sees no CUDA device" in result.stderr
