"""`visearch categories` and `visearch search`: what is indexed, and a query from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visearch.cli.app import CategoryOpt, app
from visearch.cli.output import echo_json, format_results
from visearch.context import Context
from visearch.errors import InvalidImageError


@app.command()
def categories(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the categories of the registry and whether each has a live index."""
    from visearch.index import open_index

    ctx = Context.from_env()
    index = open_index(ctx.settings)
    try:
        rows = []
        for category in ctx.registry.categories:
            live = index.live(category.name)
            count = index.count(live.name) if live else 0
            rows.append(
                {"name": category.name, "title": category.title, "index": live.name if live else None, "images": count}
            )
    finally:
        index.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['name']:<15} {row['title']:<25} {row['images']:>7} images  {row['index'] or '(not indexed)'}")


@app.command()
def search(
    image: Annotated[Path, typer.Argument(help="Query image file")],
    category: CategoryOpt,
    k: Annotated[int, typer.Option("--k", "-k", help="Number of results")] = 10,
    min_similarity: Annotated[float, typer.Option(help="Minimum similarity in percent (0-100)")] = 0.0,
    class_filter: Annotated[str | None, typer.Option("--class", help="Only results of this class")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Find the images of CATEGORY most similar to IMAGE."""
    from visearch.index import open_index
    from visearch.search import SearchEngine

    ctx = Context.from_env()
    try:
        data = image.read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"cannot read {image}: {exc.strerror or exc}") from exc
    ctx.category(category)
    engine = SearchEngine(ctx.settings, ctx.registry, ctx.store, open_index(ctx.settings))
    try:
        results = engine.search_bytes(category, data, k=k, min_similarity=min_similarity, class_filter=class_filter)
    finally:
        engine.close()
    if as_json:
        echo_json({"category": category, "results": [r.to_dict() for r in results]})
        return
    typer.echo(format_results(results))
