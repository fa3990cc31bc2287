"""The `visearch` entry point: every command module registered on the app, errors as one line."""

from __future__ import annotations

import logging
import sys

import typer

# Imported for their commands: each module registers its own on the app.
from visearch.cli import demo, index, pipeline, prepare, search, serve, steps  # noqa: F401
from visearch.cli.app import app
from visearch.errors import VisearchError

# Libraries that log routine progress at INFO; the CLI shows their warnings only.
NOISY_LOGGERS = ("httpx", "urllib3", "alembic", "mlflow", "bentoml", "kfp", "PML", "faiss")


def main() -> None:
    """Run the CLI: a VisearchError prints ``error: <message>`` and exits 1, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app()
    except VisearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
