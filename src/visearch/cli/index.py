"""`visearch index status|rollback`: the versions of a category's index and its live alias."""

from __future__ import annotations

from typing import Annotated

import typer

from visearch.cli.app import CategoryOpt, index_app
from visearch.entry_context import Context


@index_app.command("status")
def index_status(category: CategoryOpt) -> None:
    """The live collection of CATEGORY and the versions kept for rollback."""
    from visearch.index import open_index

    ctx = Context.from_env()
    ctx.category(category)
    index = open_index(ctx.settings)
    try:
        live = index.live(category)
        if not index.versions(category):
            typer.echo(
                f"{category} has no index yet; run the pipeline for it (visearch pipeline run --categories {category})"
            )
        for version in index.versions(category):
            marker = "*" if live and live.name == version.name else " "
            typer.echo(f"{marker} {version.name} ({index.status(version.name)})")
    finally:
        index.close()


@index_app.command("rollback")
def index_rollback(
    category: CategoryOpt,
    to: Annotated[
        str | None, typer.Option(help="The version to make live (default: the one before the live one)")
    ] = None,
) -> None:
    """Point CATEGORY's alias back at an earlier version; its model and the MLflow champion come along."""
    from visearch.admin import rollback
    from visearch.index import open_index

    ctx = Context.from_env()
    ctx.category(category)
    tracker = ctx.tracker()  # before the index moves: MLflow down fails here, nothing changed
    index = open_index(ctx.settings)
    try:
        result = rollback(index, category, to=to, tracker=tracker)
    finally:
        index.close()
    typer.echo(f"alias {category} -> {result['live']} (was {result['previous']})")
    typer.echo(f"MLflow champion -> version {result['champion']}" if result["champion"] else result["note"])
