"""The real service as a subprocess (`bentoml serve` on a free loopback port) and polling its answers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, env_for, free_port, stop_server
from visearch.settings import Settings


def start_server(
    settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` for ``settings``' home on a free loopback port (as `visearch serve` runs it)."""
    from visearch.cli.serve import serve_command

    port = free_port()
    env = {**env_for(settings), "BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(port=port, host="127.0.0.1"), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def running_service(
    settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real service on ``settings``' home, ready: yields its URL and process; stopped after."""
    from visearch.cli.serve import wait_ready

    process, url = start_server(settings, log, extra_env)
    try:
        if not wait_ready(url, process, timeout=180):
            pytest.fail(f"service did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
        yield url, process
    finally:
        stop_server(process)


Check = Callable[[], bool]


def wait_for(check: Check, timeout: float = 60) -> bool:
    """Poll ``check`` (HTTP errors count as "not yet") until it is true; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False
