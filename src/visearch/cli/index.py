"""`visearch index status|rollback`: the versions of a category's index and its live alias."""

from __future__ import annotations

import typer

from visearch.cli.app import CategoryOpt, index_app
from visearch.context import Context


@index_app.command("status")
def index_status(category: CategoryOpt) -> None:
    """The live collection of CATEGORY and the versions kept for rollback."""
    from visearch.index import open_index

    ctx = Context.from_env()
    ctx.category(category)
    index = open_index(ctx.settings)
    try:
        live = index.live(category)
        for version in index.versions(category):
            marker = "*" if live and live.name == version.name else " "
            typer.echo(f"{marker} {version.name} ({index.status(version.name)})")
    finally:
        index.close()


@index_app.command("rollback")
def index_rollback(category: CategoryOpt) -> None:
    """Point CATEGORY's alias back at the previous collection version (its model comes along)."""
    from visearch.index import open_index

    ctx = Context.from_env()
    ctx.category(category)
    index = open_index(ctx.settings)
    try:
        version = index.rollback(category)
    finally:
        index.close()
    typer.echo(f"alias {category} -> {version.name}")
