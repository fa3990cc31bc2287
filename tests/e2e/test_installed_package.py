"""What a team installs: the built wheel, non-editable, in a clean venv, run from an empty folder.

The same extras the Dockerfiles install; real engines that run here: a moto S3 server for the
object store, an `mlflow server` process for tracking, the embedded index. The pipeline runs on the
demo category, then the service answers `/search` and serves `/ui`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import mlflow_server, moto_server
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
ACCESS, SECRET = "visearch-wheel-access", "visearch-wheel-secret-value"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the wheel built from this tree; returns its ``bin`` folder.

    Its dependencies come from this test run's environment through a path entry (reinstalling torch
    would copy 5 GB), appended after the venv's own site-packages; `.pth` files of that folder are not
    processed there, so the editable install of the source tree is invisible: `visearch`, `pipelines`,
    `components`, `serving` and `ui` can only come from the wheel.
    """
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(work.glob("visearch-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (site / "visearch-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return env_dir / "bin"


def clean_env(bin_dir: Path, home: Path, extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_"))}
    keep.pop("PYTHONPATH", None)
    return {**keep, "PATH": f"{bin_dir}:{keep.get('PATH', '')}", "VISEARCH_HOME": str(home), **extra}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server and an `mlflow server` (SQLite backend, artifacts served by it), on loopback."""
    logs = tmp_path_factory.mktemp("engines")
    with (
        moto_server(logs) as s3,
        mlflow_server(logs, f"sqlite:///{logs / 'mlflow.db'}", str(logs / "artifacts")) as url,
    ):
        yield {
            "MINIO_HOST": s3,
            "MINIO_SECURE": "false",
            "MINIO_REGION": "us-east-1",
            "MINIO_ACCESS_KEY": ACCESS,
            "MINIO_SECRET_KEY": SECRET,
            "MINIO_BUCKET_NAME": "visearch",
            "MLFLOW_TRACKING_URI": url,
        }


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the demo pipeline and a service start, on 2 cores
def test_the_installed_wheel_runs_the_pipeline_and_the_service_from_an_empty_folder(
    installed: Path, engines: dict[str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(installed, tmp_path / "home", engines)

    def visearch(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed / "visearch"), *args], cwd=empty, env=env, capture_output=True, text=True, timeout=timeout
        )

    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import visearch, pipelines, components, serving, ui; "
            "print(visearch.__file__, pipelines.__file__, serving.__file__)",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(installed.parent) in where, where

    demo = visearch("demo", "--no-serve")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "gate:" in demo.stdout and "index: alias fashion-mnist -> fashion-mnist__" in demo.stdout
    compiled = visearch("pipeline", "compile", "-o", str(tmp_path / "pipeline.yaml"))
    assert compiled.returncode == 0 and (tmp_path / "pipeline.yaml").stat().st_size > 10_000, compiled.stderr

    port = free_port()
    server = subprocess.Popen(
        [str(installed / "visearch"), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, "the service exited"
            try:
                if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(1)
        image = next((tmp_path / "home" / "cache").rglob("*.png"))
        answer = httpx.post(
            f"{url}/search",
            files={"image": (image.name, image.read_bytes(), "image/png")},
            data={"category": "fashion-mnist", "k": "3"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == 3
        assert httpx.get(f"{url}/ui/", timeout=30).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # `visearch serve` and the bentoml server it started
        server.wait(timeout=60)
