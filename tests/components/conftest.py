"""Fixtures of the components tier: the built components, and a process environment on a test home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import use_home
from visearch.settings import Settings


@pytest.fixture(scope="session")
def steps() -> Any:
    """The five components as the pipeline builds them (``components.build``); ``.python_func`` is each one's function."""
    from components import build

    return build("registry.example.com/visearch-train:test")


@pytest.fixture
def step_home(home: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The test's home as a step sees it: from the environment (no .env in the working directory)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    use_home(monkeypatch, home, cwd)
    return home
