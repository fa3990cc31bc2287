"""The `visearch` entry point: every command module registered on the app, errors as one line."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import typer

# Imported for their commands: each module registers its own on the app.
from visearch.cli import catalogue, demo, index, pipeline, prepare, search, serve, steps  # noqa: F401
from visearch.cli.app import app
from visearch.errors import VisearchError

# Libraries that log routine progress at INFO; the CLI shows their warnings only.
NOISY_LOGGERS = ("httpx", "urllib3", "alembic", "mlflow", "bentoml", "kfp", "PML", "faiss")


def main() -> None:
    """Run the CLI: a VisearchError prints ``error: <message>`` and exits 1; anything else exits 2, never a traceback."""
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
    except Exception as exc:  # noqa: BLE001 - a bug still ends in one line; the traceback on request
        if os.environ.get("VISEARCH_DEBUG"):
            raise
        from visearch.runtime import engine_of, http_status

        if http_status(exc) == 503:  # an engine client's own error: the engine is down, not a bug
            typer.echo(f"error: {engine_of(exc)} unavailable: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno}; "
            "VISEARCH_DEBUG=1 shows the traceback; please report it)",
            err=True,
        )
        sys.exit(2)
