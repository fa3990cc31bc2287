"""The package face re-exports the names of its four modules, so callers import from ``visearch.tracking``."""

from __future__ import annotations

import subprocess
import sys

import visearch.tracking
from visearch.tracking import connection, naming, registry, runs

MODULES = [connection, naming, registry, runs]


def test_the_face_defines_nothing_of_its_own() -> None:
    homes = {name: module for module in MODULES for name in module.__all__}
    assert sorted(visearch.tracking.__all__) == sorted(homes)
    for name, module in homes.items():
        assert getattr(visearch.tracking, name) is getattr(module, name), name


def test_importing_writes_no_environment() -> None:
    """The MLflow variables are written when a server client opens (see ``connection``), never on import."""
    code = "import os; before = dict(os.environ); import visearch.tracking; print(dict(os.environ) == before)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
