"""Running the service: ``bentoml serve`` of the ``serving`` package in a child process, until Ctrl-C.

``visearch serve`` and ``visearch demo`` use it; so do the tests and benchmarks that need a real
server. The service itself lives in the top-level ``serving`` package of the distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from visearch.cli.app import app
from visearch.errors import VisearchError
from visearch.settings import Settings

SERVICE_TARGET = "serving.service:Visearch"


def serve_command(*, port: int, host: str) -> list[str]:
    """``bentoml serve`` of the installed ``serving`` package (no source tree needed)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    launcher = [str(bentoml)] if bentoml.is_file() else [sys.executable, "-m", "bentoml"]
    return [*launcher, "serve", SERVICE_TARGET, "--port", str(port), "--host", host]


def serve_env(settings: Settings) -> dict[str, str]:
    """The environment of the server process: this settings' home and registry, no usage tracking."""
    env = dict(os.environ)
    env["VISEARCH_HOME"] = str(settings.home)
    if settings.visearch_categories:
        env["VISEARCH_CATEGORIES"] = str(Path(settings.visearch_categories).resolve())
    env["BENTOML_DO_NOT_TRACK"] = "true"  # no internet here; and no telemetry by default anyway
    if settings.serve_workers:  # SERVE_WORKERS: BentoML's own worker count, through its documented override
        overrides = json.loads(env.get("BENTOML_CONFIG_OVERRIDES") or "{}")
        overrides.setdefault("services", {}).setdefault("visearch", {})["workers"] = settings.serve_workers
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes] | None = None, *, timeout: float = 120) -> bool:
    """Poll ``url``/readyz until it answers 200; False on timeout or if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def serve_forever(settings: Settings, *, port: int = 3000, host: str = "127.0.0.1") -> None:
    """Run the service until Ctrl-C, printing its URLs once it is ready."""
    process = subprocess.Popen(serve_command(port=port, host=host), env=serve_env(settings))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    try:
        if wait_ready(url, process):
            print(
                f"\nvisearch is serving:\n  UI       {url}/ui\n  API docs {url}/docs\n  OpenAPI  {url}/docs.json\n"
                f"  health   {url}/readyz  {url}/metrics\nCtrl-C stops it.",
                flush=True,
            )
        elif process.poll() is None:
            print(f"the service at {url} is not ready yet; see its log above (/readyz says why)", flush=True)
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    if code not in (0, -15, None):
        raise VisearchError(f"the service exited with code {code}")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
) -> None:
    """Start the BentoML service (REST + OpenAPI at /docs) with the Gradio UI at /ui."""
    serve_forever(Settings(), port=port, host=host)
