"""The code gates: ruff lint and format, mypy on the library, and the architecture contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

FOLDERS = ["src", "tests", "components", "pipelines", "serving", "ui", "benchmarks"]


def run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_ruff_lint_is_clean() -> None:
    result = run(sys.executable, "-m", "ruff", "check", *FOLDERS)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_applied() -> None:
    result = run(sys.executable, "-m", "ruff", "format", "--check", *FOLDERS)
    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_is_clean_on_the_library() -> None:
    result = run(sys.executable, "-m", "mypy", timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]


def test_architecture_contracts_hold() -> None:
    """Layers bottom up, no kfp/bentoml/gradio in the library, no import cycles (pyproject [tool.importlinter])."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = run(lint_imports, "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout
