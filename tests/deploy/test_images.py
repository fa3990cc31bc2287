"""The two images, built from this checkout and run as their users.

No Docker engine here: scripts/build-images.sh builds both Dockerfiles with buildah (chroot isolation,
the host's network) on a Python base it makes with debootstrap, and `buildah from` + `buildah run`
runs an image's filesystem with its USER, environment and working directory (design.md, environment
facts; `podman run` cannot set rlimits in this sandbox). A host folder bind-mounted at /data is the
data home: the train image prepares it with `visearch demo --no-serve`, the serve image starts its
CMD on it and answers a real search from the host. The train image also compiles the pipeline and
runs one compiled step the way KFP's launcher does (its command, its args, the executor input, an
artifact under the /minio mount prefix). Build times and image sizes are printed (benchmarks/results/images.md).
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

from tests.deploy.cluster import image_env
from tests.helpers import ROOT, free_port, need
from visearch.data.demo import demo_source

# A cold build (no layer cache) takes most of an hour on 2 busy cores; a cached one, seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
TAG = "dev"  # the script's default: a developer's build and the suite's share their images
UID = 10001  # the images' USER (Dockerfile.*: useradd --uid 10001)
DEMO = "fashion-mnist"
SCRIPT = ROOT / "scripts" / "build-images.sh"


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
    """The image's Docker config (User, Env, Cmd, WorkingDir, Healthcheck, ExposedPorts)."""
    return dict(json.loads(buildah("inspect", "--type", "image", image))["Docker"]["config"])


def own(folder: Path) -> None:
    """Give ``folder`` and all under it to the images' user, as a named volume would be."""
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, UID, UID, follow_symlinks=False)


@contextmanager
def container(image: str, home: Path) -> Iterator[Container]:
    own(home)
    box = Container(image, home)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Both images built by scripts/build-images.sh (its layer cache makes a rebuild take seconds)."""
    tools = ("buildah", "podman", "debootstrap")
    need(all(shutil.which(t) for t in tools), f"{'/'.join(tools)} missing: scripts/system-deps.sh installs them")
    need(os.geteuid() == 0, "buildah builds here as root (chroot isolation): run as root, as CI does")
    folder = tmp_path_factory.mktemp("build")
    stats, log = folder / "stats", folder / "build.log"
    env = {**os.environ, "TAG": TAG, "BUILD_STATS": str(stats)}
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(SCRIPT), "serve", "train"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            timeout=3300,
        )  # fmt: skip
    assert result.returncode == 0, log.read_text(errors="replace")[-6000:]
    for line in stats.read_text().splitlines():
        name, seconds, size = line.split()
        print(f"{name}: {int(size) / 1e9:.2f} GB, built in {seconds} s")
    return {kind: f"localhost/visearch-{kind}:{TAG}" for kind in ("serve", "train")}


@pytest.fixture(scope="module")
def demo_home(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home the train image prepared: `visearch demo --no-serve` (pipeline, index, sample query)."""
    home = tmp_path_factory.mktemp("demo-home")
    with container(images["train"], home) as box:
        result = box.run("env", "VISEARCH_HOME=/data", "visearch", "demo", "--no-serve", timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "demo finished" in result.stdout and f"alias {DEMO} ->" in result.stdout
    return home


@pytest.mark.parametrize("kind", ["serve", "train"])
def test_image_config_runs_as_its_non_root_user(images: dict[str, str], kind: str, tmp_path: Path) -> None:
    image = images[kind]
    settings = config(image)
    assert settings["User"] == f"{UID}:{UID}"
    # the environment the Kubernetes contract test reads from the Dockerfile is the image's own
    env = dict(item.split("=", 1) for item in settings["Env"])
    written = {name: value for name, value in image_env(image).items() if "$" not in value}
    assert written and {name: env.get(name) for name in written} == written
    assert env["PATH"].startswith("/opt/venv/bin:") and env["HOME"] == "/home/visearch"
    if kind == "serve":
        health = settings["Healthcheck"]
        assert health["Test"][0] == "CMD" and "/readyz" in health["Test"][-1] and health["Retries"] == 3
        assert "3000/tcp" in settings["ExposedPorts"]
    else:
        assert settings["Cmd"] == ["visearch", "--help"]
    with container(image, tmp_path) as box:
        # who runs, and what that user may not touch: the venv and the system belong to root
        probe = box.run(
            "sh", "-c", "id -u; id -g; test -w /opt/venv/bin || echo venv-ro; test -w /usr || echo usr-ro; "
            "test -w /data && echo data-rw; test -w \"$HOME\" && echo home-rw; test -e /opt/venv/bin/pip || echo no-venv-pip",
            timeout=120,
        )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split()
    assert lines[:2] == [str(UID), str(UID)]
    assert {"venv-ro", "usr-ro", "data-rw", "home-rw"} <= set(lines)
    # the service's venv has no pip; the train image keeps it (KFP's SDK may install packages)
    assert ("no-venv-pip" in lines) == (kind == "serve")


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
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"buildah" not in argv[0] and any(b"bentoml" in arg for arg in argv)


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@contextmanager
def serving(box: Container, command: list[str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The image's CMD on a free loopback port (host network: 3000 may be taken); killed as a group after."""
    port = free_port()
    args = [*command]
    for flag, value in (("--port", str(port)), ("--host", "127.0.0.1")):
        args[args.index(flag) + 1] = value
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
    log = tmp_path / "serve.log"
    with container(images["serve"], demo_home) as box, serving(box, command, log) as (url, process):
        assert wait_ready(url, process, timeout=300), log.read_text(errors="replace")[-4000:]
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


def test_train_image_runs_a_compiled_step_as_kfp_launches_it(
    images: dict[str, str], demo_home: Path, tmp_path: Path
) -> None:
    """`preprocess` from the compiled YAML: its command and args, the executor input, a /minio artifact."""
    home = tmp_path / "home"
    shutil.copytree(demo_home, home, symlinks=True)  # the serve test keeps its home as the demo left it
    with container(images["train"], home) as box:
        compiled = box.run(
            "visearch", "pipeline", "compile", "--output", "/data/pipeline.yaml", "--image", images["train"]
        )
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        # the pipeline spec, then kfp-kubernetes' platform spec (secrets, volumes) as a second document
        spec = next(yaml.safe_load_all((home / "pipeline.yaml").read_text()))
        step = spec["deploymentSpec"]["executors"]["exec-preprocess"]["container"]
        assert step["image"] == images["train"]
        # what KFP's launcher hands the step: artifact URIs it maps to local paths under /minio (the
        # folder the image gives its user), parameter and metadata files
        uri = "minio://mlpipeline/v2/artifacts/visearch/run-1/preprocess"
        artifacts = {
            name: {"artifacts": [{"name": name, "type": {"schemaTitle": kind}, "uri": f"{uri}/{name}", "metadata": {}}]}
            for name, kind in (("manifest", "system.Dataset"), ("data_report", "system.Markdown"))
        }
        executor_input = {
            "inputs": {"parameterValues": {"category": DEMO, "pipeline_run": "run-1"}},
            "outputs": {
                "artifacts": artifacts,
                "parameters": {"Output": {"outputFile": "/data/out/Output"}},
                "outputFile": "/data/out/executor_output.json",
            },
        }
        args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in step["args"]]
        ran = box.run("env", "VISEARCH_HOME=/data", *step["command"], *args, timeout=600)
        assert ran.returncode == 0, (ran.stdout + ran.stderr)[-6000:]
        listed = box.run(
            "sh", "-c", "cd /minio/mlpipeline/v2/artifacts/visearch/run-1/preprocess && stat -c '%u %n' */*"
        )
    assert listed.returncode == 0, listed.stderr
    owners = dict(reversed(line.split(" ", 1)) for line in listed.stdout.splitlines())
    assert {"manifest/manifest.csv", "manifest/params.json"} <= set(owners) and set(owners.values()) == {str(UID)}
    # what the launcher reads back: the return value (the MLflow run the later steps log to, in the
    # home's tracking store) and the artifacts' metadata
    output = json.loads((home / "out" / "executor_output.json").read_text())
    assert len(output["parameterValues"]["Output"]) == 32 and set(output["artifacts"]) == set(artifacts)


def test_build_is_cached_when_nothing_changed(images: dict[str, str]) -> None:
    """A second run of the script rebuilds nothing: CI and developers pay for the layers once."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "serve"], cwd=ROOT, env={**os.environ, "TAG": TAG}, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "Using cache" in output and time.monotonic() - started < 300
    # every step that installs something came from the cache
    assert "Collecting" not in output and "Processing" not in output
