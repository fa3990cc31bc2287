"""The two images, built from this checkout and run as their users.

No Docker engine here: scripts/build-images.sh builds both Dockerfiles with buildah (chroot isolation,
the host's network) on a Python base it makes with debootstrap, and `buildah from` + `buildah run`
runs an image's filesystem with its USER, environment and working directory (design.md, environment
facts; `podman run` cannot set rlimits in this sandbox). A host folder bind-mounted at /data is the
data home: the train image prepares it with `visearch demo --no-serve`, the serve image starts its
CMD on it. The train image also compiles the pipeline and runs one compiled step the way KFP's
launcher does. Build times and image sizes are recorded (junit properties, and printed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT, free_port, need
from visearch.data.demo import demo_source

pytestmark = pytest.mark.slow
TAG = "dev"  # the script's default: a developer's build and the suite's share their images
UID = 10001  # the images' USER (Dockerfile.*: useradd --uid 10001)
DEMO = "fashion-mnist"


class Container:
    """A working container of an image (`buildah from`), the data home at /data; removed by ``close``."""

    def __init__(self, image: str, home: Path) -> None:
        self.name = f"visearch-test-{uuid.uuid4().hex[:8]}"
        self.home = home
        buildah("from", "--name", self.name, image)

    def command(self, *args: str) -> list[str]:
        """``buildah run`` of ``args`` as the image's user, in its working directory and environment."""
        return [
            "buildah", "run", "--isolation", "chroot", "--network", "host",
            "--volume", f"{self.home}:/data", self.name, "--", *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120)


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def config(image: str) -> dict[str, Any]:
    """The image's OCI config (User, Env, Cmd, WorkingDir)."""
    return dict(json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"])


@contextmanager
def container(image: str, home: Path) -> Iterator[Container]:
    # The home belongs to the image's user, as a named volume would (Dockerfile: chown of /data).
    os.chown(home, UID, UID)
    box = Container(image, home)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Both images built by scripts/build-images.sh (cached layers make a rebuild take seconds)."""
    need(bool(shutil.which("buildah") and shutil.which("podman")), "buildah/podman missing (scripts/system-deps.sh)")
    need(os.geteuid() == 0, "buildah builds here as root (chroot isolation)")
    folder = tmp_path_factory.mktemp("build")
    stats, log = folder / "stats", folder / "build.log"
    env = {**os.environ, "TAG": TAG, "BUILD_STATS": str(stats)}
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-images.sh"), "serve", "train"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=3600,
        )  # fmt: skip
    assert result.returncode == 0, log.read_text(errors="replace")[-6000:]
    built = {line.split()[0]: line.split()[1:] for line in stats.read_text().splitlines()}
    for name, (seconds, size) in built.items():
        print(f"{name}: {int(size) / 1e9:.2f} GB, built in {seconds} s")
    return {kind: f"localhost/visearch-{kind}:{TAG}" for kind in ("serve", "train")}


@pytest.fixture(scope="module")
def demo_home(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home the train image prepared: `visearch demo --no-serve` (pipeline, index, sample query)."""
    home = tmp_path_factory.mktemp("demo-home")
    with container(images["train"], home) as box:
        result = box.run("env", "VISEARCH_HOME=/data", "visearch", "demo", "--no-serve", timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "demo finished" in result.stdout and f"alias {DEMO} ->" in result.stdout
    return home


def test_both_images_run_as_their_non_root_user(images: dict[str, str]) -> None:
    for image in images.values():
        assert config(image)["User"] == f"{UID}:{UID}"


def test_train_image_prepares_a_data_home_as_its_user(demo_home: Path) -> None:
    written = [path for path in demo_home.rglob("*") if path.is_file()]
    assert written, "the demo wrote nothing into the mounted home"
    # every file the pipeline wrote belongs to the image's user: it ran as uid 10001, not root
    assert {path.stat().st_uid for path in written} == {UID}


def descendants(pid: int) -> list[int]:
    """Process ids under ``pid`` (all generations), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def is_service(pid: int) -> bool:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return b"buildah" not in argv[0] and any(b"bentoml" in arg for arg in argv)


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@contextmanager
def serving(box: Container, command: list[str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The image's CMD on a free loopback port (host network: 3000 may be taken); killed as a group after."""
    port = free_port()
    args = [str(port) if previous == "--port" else arg for previous, arg in zip(["", *command], command, strict=True)]
    args = ["127.0.0.1" if previous == "--host" else arg for previous, arg in zip(["", *args], args, strict=True)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            box.command("env", "VISEARCH_HOME=/data", *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=30)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def test_serve_image_serves_the_trained_home_as_its_user(
    images: dict[str, str], demo_home: Path, tmp_path: Path
) -> None:
    from visearch.cli.serve import wait_ready

    command = config(images["serve"])["Cmd"]
    assert command[:2] == ["bentoml", "serve"] and "--port" in command
    meta = pd.read_csv(demo_source() / "meta.csv")
    query = meta.iloc[0]
    with container(images["serve"], demo_home) as box, serving(box, command, tmp_path / "serve.log") as (url, process):
        assert wait_ready(url, process, timeout=300), (tmp_path / "serve.log").read_text(errors="replace")[-4000:]
        # the service's processes (buildah's own helper stays root outside the image)
        server = [pid for pid in descendants(process.pid) if is_service(pid)]
        assert server and {uid_of(pid) for pid in server} == {UID}
        with (demo_source() / "images" / query["file"]).open("rb") as image:
            response = httpx.post(
                f"{url}/search",
                data={"category": DEMO, "k": "5"},
                files={"image": ("query.png", image, "image/png")},
                timeout=60,
            )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    # the query image is in the demo's index: it comes back first, with its class
    assert len(results) == 5 and results[0]["file"] == query["file"] and results[0]["class"] == query["class"]
    assert results[0]["similarity"] > 99


def test_train_image_compiles_the_pipeline_and_runs_a_step(images: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with container(images["train"], home) as box:
        compiled = box.run(
            "visearch", "pipeline", "compile", "--output", "/data/pipeline.yaml", "--image", images["train"]
        )
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        spec = yaml.safe_load((home / "pipeline.yaml").read_text())
        step = spec["deploymentSpec"]["executors"]["exec-shards"]["container"]
        assert step["image"] == images["train"]
        # the step as KFP's launcher starts it: its command, its args with the executor input
        executor_input = {
            "inputs": {"parameterValues": {"category": DEMO, "embed_shards": 3}},
            "outputs": {
                "parameters": {"Output": {"outputFile": "/data/out/Output"}},
                "outputFile": "/data/out/executor_output.json",
            },
        }
        args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in step["args"]]
        ran = box.run(*step["command"], *args, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    output = json.loads((home / "out" / "Output").read_text())
    assert output == [{"category": DEMO, "shard": f"{i}/3"} for i in range(3)]


def test_build_is_cached_when_nothing_changed(images: dict[str, str], tmp_path: Path) -> None:
    """A second run of the script rebuilds nothing: CI and developers pay for the layers once."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images.sh"), "serve"],
        cwd=ROOT, env={**os.environ, "TAG": TAG}, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert time.monotonic() - started < 300 and "Using cache" in result.stdout + result.stderr
