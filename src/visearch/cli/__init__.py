"""The `visearch` command (Typer): every pipeline step, prepare, search, index admin, pipeline, demo and serve.

One module a group of commands; :mod:`visearch.cli.app` holds the apps they register on and
:mod:`visearch.cli.main` the entry point.
"""

from __future__ import annotations

from visearch.cli.app import app
from visearch.cli.main import main

__all__ = ["app", "main"]
