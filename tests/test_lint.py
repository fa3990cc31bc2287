"""The code style gate: ruff lint and format over every Python folder of the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["src", "tests", "components", "pipelines", "serving", "ui", "benchmarks"]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *FOLDERS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_ruff_lint_is_clean() -> None:
    result = ruff("check")
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_applied() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout[-4000:]
