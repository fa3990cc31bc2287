"""Real servers for tests: free loopback ports and the `bentoml serve` process of the service."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from visearch.cli.serve import serve_command
from visearch.settings import Settings

from .conftest import env_for

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` for ``settings``' home on a free loopback port (as `visearch serve` runs it)."""
    port = free_port()
    env = {**env_for(settings), "BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(port=port, host="127.0.0.1"), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate, and kill if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
