"""Shared fixtures: isolated data homes, a tiny real-image category, and an indexed home.

Everything runs on real engines: the embedded Qdrant engine (qdrant-edge), SQLite MLflow, a local object store, real
PNG images from the bundled Fashion-MNIST subset, real (very short) training.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from visearch.categories import Registry, load_registry
from visearch.data.demo import demo_source
from visearch.settings import Settings
from visearch.storage import LocalStore

TINY = "tiny"
TINY_CLASSES = ("Trouser", "Sneaker", "Bag", "Ankle-boot", "Dress")
TINY_PER_CLASS = 8


def write_registry(path: Path, *, data_dir: str = "datasets/tiny") -> Path:
    """A registry with the shipped categories plus `tiny`: fast settings for tests."""
    shipped = yaml.safe_load(load_registry().model_dump_json())  # JSON is valid YAML
    tiny = {
        "name": TINY,
        "title": "Tiny test category",
        "business_usage": "Five Fashion-MNIST classes, eight images each.",
        "credits": "Fashion-MNIST (Zalando Research, MIT).",
        "data_dir": data_dir,
        "train": {
            "input_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "sampler_m": 2,
            "embedder_layers": [32],
            "split": 0.6,
            "holdout": 0.25,
            "max_steps": 3,
        },
    }
    path.write_text(yaml.safe_dump({"categories": [*shipped["categories"], tiny]}), encoding="utf-8")
    return path


def copy_tiny_dataset(target: Path) -> int:
    """Copy TINY_PER_CLASS real images of each TINY_CLASSES class (+ their meta rows) into target."""
    source = demo_source()
    meta = pd.read_csv(source / "meta.csv", index_col=0)
    rows = meta[meta["class"].isin(TINY_CLASSES)].groupby("class").head(TINY_PER_CLASS).reset_index(drop=True)
    for file in rows["file"]:
        destination = target / "images" / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((source / "images" / file).read_bytes())
    rows.to_csv(target / "meta.csv")
    return len(rows)


def make_home(home: Path) -> Settings:
    """A fresh data home with the tiny dataset in its object store and a registry naming it."""
    home.mkdir(parents=True, exist_ok=True)
    registry = write_registry(home / "categories.yaml")
    settings = Settings(visearch_home=home, visearch_categories=registry, _env_file=None)
    copy_tiny_dataset(settings.objects_dir / "datasets" / TINY)
    return settings


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI, service, pipeline) that uses this home and these engines.

    The caller's engine variables are dropped; the engines the settings name (a Qdrant or MLflow
    server, an S3 store) are passed on, so a subprocess sees exactly what ``settings`` says.
    """
    prefixes = ("QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_", "ENGINE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["VISEARCH_HOME"] = str(settings.home)
    env["VISEARCH_CATEGORIES"] = str(settings.visearch_categories)
    env["ENGINE_CONNECT_TIMEOUT"] = str(settings.engine_connect_timeout)
    env["ENGINE_READ_TIMEOUT"] = str(settings.engine_read_timeout)
    env["ENGINE_RETRIES"] = str(settings.engine_retries)
    if settings.qdrant_url:
        env["QDRANT_URL"] = settings.qdrant_url
    if settings.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.minio_host:
        secrets = {"MINIO_ACCESS_KEY": settings.minio_access_key, "MINIO_SECRET_KEY": settings.minio_secret_key}
        env.update({name: value.get_secret_value() for name, value in secrets.items() if value is not None})
        env.update(
            {
                "MINIO_HOST": settings.minio_host,
                "MINIO_BUCKET_NAME": settings.minio_bucket_name,
                "MINIO_MAIN_PATH": settings.minio_main_path,
                "MINIO_SECURE": str(settings.minio_secure).lower(),
            }
        )
        if settings.minio_region:
            env["MINIO_REGION"] = settings.minio_region
    return env


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Settings for an empty-but-for-data home (tiny dataset in the store)."""
    return make_home(tmp_path / "home")


@pytest.fixture
def registry(home: Settings) -> Registry:
    return load_registry(home.visearch_categories)


@pytest.fixture
def store(home: Settings) -> LocalStore:
    return LocalStore(home.objects_dir)


@pytest.fixture(scope="session")
def indexed_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A home where `tiny` went through preprocess → train → evaluate → embed → upsert (in process).

    Session-scoped and read-only for its users: tests that change the index make their own home.
    """
    from visearch.loop import run_loop

    settings = make_home(tmp_path_factory.mktemp("indexed") / "home")
    registry = load_registry(settings.visearch_categories)
    run_loop(settings, LocalStore(settings.objects_dir), registry.get(TINY), show_progress=False)
    yield settings


@pytest.fixture(scope="module")
def served(
    indexed_home: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real service (`bentoml serve`) on the indexed home: its URL and process, one per test module."""
    from visearch.cli.serve import wait_ready

    from .servers import start_server, stop_server

    log = tmp_path_factory.mktemp("service") / "server.log"
    process, url = start_server(indexed_home, log)
    try:
        if not wait_ready(url, process, timeout=180):
            pytest.fail(f"service did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
        yield url, process
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def server(served: tuple[str, subprocess.Popen[bytes]]) -> str:
    """The URL of the real service on the indexed home."""
    return served[0]
