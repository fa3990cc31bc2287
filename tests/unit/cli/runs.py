"""The `visearch` command run as a user runs it (a subprocess on a test home), and checks of its error line."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.helpers import env_for
from visearch.settings import Settings


def visearch(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m visearch.cli ARGS` on this home, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def visearch_cli(
    settings: Settings, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """:func:`visearch` and how long it took."""
    started = time.monotonic()
    result = visearch(settings, *args, timeout=timeout)
    return result, time.monotonic() - started


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]
