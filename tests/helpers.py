"""Helpers every tier shares: prerequisites, data homes and their environment, processes, real images.

Helpers of one tier live beside its tests: ``tests/components/fakes.py`` (kfp artifacts);
``tests/service/server.py``, ``fake_engine.py``, ``uploads.py`` (the service process, a hanging
engine, lying uploads); ``tests/e2e/servers.py`` (moto S3, TLS, MLflow: the unit and service tiers
borrow them); ``tests/unit/data/datasets.py`` (publisher layouts), ``tests/unit/cli/runs.py`` (the
CLI as a subprocess), ``tests/unit/homes.py``, ``tests/unit/index/modes.py``. Fixtures live in the
``conftest.py`` files. No test module imports another.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from PIL import Image

from visearch.categories import load_registry
from visearch.data.demo import demo_source
from visearch.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# --- prerequisites ------------------------------------------------------------------------------


def need(condition: bool, why: str) -> None:
    """Skip without a prerequisite (a system tool, a driver), except in CI where it must be there.

    scripts/system-deps.sh installs them under CI=true, so a missing one there is a failure.
    """
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def need_module(name: str, why: str) -> Any:
    """``pytest.importorskip`` that fails instead of skipping in CI."""
    try:
        return __import__(name)
    except ImportError:
        need(False, why)


# --- data homes ---------------------------------------------------------------------------------
TINY = "tiny"
TINY_CLASSES = ("Trouser", "Sneaker", "Bag", "Ankle-boot", "Dress")
TINY_PER_CLASS = 8
# A registered category with no caption columns (every shipped one declares some): text search refuses it.
PLAIN = "plain"


def write_registry(path: Path, *, data_dir: str = "datasets/tiny") -> Path:
    """A registry with the shipped categories plus `tiny` (fast settings for tests) and `plain` (no captions)."""
    shipped = yaml.safe_load(load_registry().model_dump_json())  # JSON is valid YAML
    tiny = {
        "name": TINY,
        "title": "Tiny test category",
        "business_usage": "Five Fashion-MNIST classes, eight images each.",
        "credits": "Fashion-MNIST (Zalando Research, MIT).",
        "data_dir": data_dir,
        # The demo's caption columns, as the shipped fashion-mnist entry declares them.
        "fields": {"article": "keyword", "source": "text"},
        "captions": ["article", "source"],
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
    plain = {
        "name": PLAIN,
        "title": "Plain test category",
        "business_usage": "A category declaring no caption columns.",
        "credits": "None: it holds no data.",
    }
    path.write_text(yaml.safe_dump({"categories": [*shipped["categories"], tiny, plain]}), encoding="utf-8")
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


def copy_home(indexed: Settings, target: Path) -> Settings:
    """A private copy of the indexed home (index, objects, work, registry): tests may break it."""
    shutil.copytree(indexed.home, target, ignore=shutil.ignore_patterns("cache", "tmp"))
    return Settings(visearch_home=target, visearch_categories=target / "categories.yaml", _env_file=None)


ENGINE_PREFIXES = ("QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_", "ENGINE_")


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI, service, pipeline) that uses this home and these engines.

    The caller's engine variables are dropped; the engines the settings name (a Qdrant or MLflow
    server, an S3 store) are passed on, so a subprocess sees exactly what ``settings`` says.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENGINE_PREFIXES)}
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


def use_home(monkeypatch: pytest.MonkeyPatch, settings: Settings, cwd: Path) -> None:
    """This process's environment as ``env_for(settings)`` (what a pipeline step reads), run from ``cwd``.

    ``cwd`` holds no ``.env``: the settings come from the environment alone.
    """
    for key in list(os.environ):
        if key.startswith(ENGINE_PREFIXES):
            monkeypatch.delenv(key)
    for key, value in env_for(settings).items():
        if key.startswith(ENGINE_PREFIXES):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)


def prepared(home, registry, store, input_size: int) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    """Manifest, a frozen-trunk model at ``input_size`` and its embeddings of `tiny`, under the home's work dir."""
    from visearch.categories import TrainParams
    from visearch.stages.embed import run_embed
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    work = home.work_dir / TINY
    category = registry.get(TINY)
    if not (work / "manifest" / "manifest.csv").exists():
        run_preprocess(home, store, category, work / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=input_size), work / f"model-{input_size}")
    embeddings = run_embed(
        home, store, category, work / "manifest", model, work / f"emb-{input_size}", show_progress=False
    )
    return work / "manifest", model, embeddings


def live_state(settings: Settings) -> tuple[Any, list[Any]]:
    """The live collection of TINY and all its versions (what a failed step must leave as it was)."""
    from visearch.index import open_index

    index = open_index(settings)
    try:
        return index.live(TINY), index.versions(TINY)
    finally:
        index.close()


# --- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL where nothing listens: a server that is down (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate, and kill if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll ``predicate`` quickly; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def kill9(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- real images ----------------------------------------------------------------------------------
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def photo(index: int, size: int = 96) -> Image.Image:
    """A distinct real photo crop per index (scikit-image samples; offsets far apart)."""
    from skimage import data as samples

    picture = getattr(samples, SOURCES[index % len(SOURCES)])()
    height, width = picture.shape[:2]
    step = index // len(SOURCES)
    side = min(height, width) // 2
    top, left = (step * 37) % (height - side), (step * 53) % (width - side)
    crop = Image.fromarray(picture[top : top + side, left : left + side])
    return crop.resize((size, size)).rotate(90 * (step % 4))


PHONE_SIZE = (4032, 3024)  # a 12-megapixel phone camera, landscape as shown


def phone_photo(size: tuple[int, int] = PHONE_SIZE, quality: int = 80) -> bytes:
    """A 12-megapixel JPEG the way phones save one: pixels stored portrait, EXIF orientation 6 turns them upright.

    Real photos (scikit-image samples, enlarged 2x as a phone's detail per pixel) tiled over
    ``size``; about 1 MB, so decoding costs what a real upload's does.
    """
    from skimage import data as samples

    canvas = Image.new("RGB", size)
    tiles = [Image.fromarray(getattr(samples, name)()) for name in SOURCES[:4]]
    tiles = [tile.resize((tile.width * 2, tile.height * 2), Image.Resampling.BICUBIC) for tile in tiles]
    top, turn = 0, 0
    while top < size[1]:
        left = 0
        while left < size[0]:
            tile = tiles[turn % len(tiles)]
            canvas.paste(tile, (left, top))
            left, turn = left + tile.width, turn + 1
        top += 600  # rows overlap a little: no black gaps
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    canvas.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
