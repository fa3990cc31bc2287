"""The Typer apps of the `visearch` command; the command modules register on them.

Defined apart from the commands so that every command module can import them without a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Category-based visual similarity search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
index_app = typer.Typer(help="Inspect and administer the Qdrant collections.", no_args_is_help=True)
app.add_typer(index_app, name="index")

CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Category name from the registry")]
DirOpt = Annotated[Path | None, typer.Option(help="Directory (default: under VISEARCH_HOME/work/<category>)")]
