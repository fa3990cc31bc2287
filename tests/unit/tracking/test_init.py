"""The package face re-exports the names of its four modules, so callers import from ``visearch.tracking``."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import visearch.tracking
from visearch.tracking import connection, naming, registry, runs

MODULES = [connection, naming, registry, runs]


def defined_in(module: ModuleType) -> set[str]:
    """The public classes, functions and constants ``module`` defines (not those it imports)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (getattr(value, "__module__", None) == module.__name__ or (name.isupper() and isinstance(value, str)))
    }


def test_the_face_re_exports_what_its_modules_define_and_nothing_else() -> None:
    homes = {name: module for module in MODULES for name in defined_in(module)}
    assert sorted(visearch.tracking.__all__) == sorted(homes)
    for name, module in homes.items():
        assert getattr(visearch.tracking, name) is getattr(module, name), name


def test_importing_writes_no_environment() -> None:
    """The MLflow variables are written when a server client opens (see ``connection``), never on import."""
    code = "import os; before = dict(os.environ); import visearch.tracking; print(dict(os.environ) == before)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
