"""The package face: every public name resolves from ``visearch.index``, and nothing more loads than asked for."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import visearch.index

MODULES = ["types", "versions", "facade", "opening"]


@pytest.mark.parametrize("name", visearch.index.__all__)
def test_each_public_name_is_its_modules_object(name: str) -> None:
    homes = [importlib.import_module(f"visearch.index.{module}") for module in MODULES]
    defined = [vars(home)[name] for home in homes if name in vars(home)]
    assert defined and all(value is defined[0] for value in defined)  # one object, however often imported
    assert getattr(visearch.index, name) is defined[0] and name in dir(visearch.index)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        visearch.index.nothing  # noqa: B018


def test_importing_one_backend_does_not_load_the_facade() -> None:
    """A process that opens only the embedded engine (e.g. a reader subprocess) loads neither façade nor settings."""
    code = (
        "import sys, visearch.index.edge; print(' '.join(sorted(m for m in sys.modules if m.startswith('visearch'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "visearch.index.edge" in loaded
    assert not {"visearch.index.facade", "visearch.index.opening", "visearch.settings"} & set(loaded), loaded
