"""`visearch demo`: the whole loop on the bundled demo category, then a sample query."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from visearch.cli import Context


def run_demo(ctx: Context, *, serve: bool, port: int) -> None:
    from visearch.cli import format_metrics, format_results
    from visearch.cli_prepare import ensure_demo_data
    from visearch.index import VectorIndex, make_client
    from visearch.search import SearchEngine
    from visearch.steps import load_manifest, run_loop

    started = time.monotonic()
    typer.echo(ensure_demo_data(ctx))
    category = next(c for c in ctx.registry.categories if c.demo)
    outcome = run_loop(ctx.settings, ctx.store, category)
    typer.echo("\nEvaluation (baseline = frozen pretrained trunk, tuned = fine-tuned):")
    typer.echo(format_metrics(outcome.metrics))
    typer.echo(f"\nindex: alias {category.name} -> {outcome.collection} ({outcome.count} images)")

    manifest = load_manifest(outcome.manifest)
    query = manifest[manifest["split"] != "train"].iloc[0]
    engine = SearchEngine(ctx.settings, ctx.registry, ctx.store, VectorIndex(make_client(ctx.settings)))
    try:
        results = engine.search_bytes(category.name, ctx.store.get_bytes(query["key"]), k=5)
    finally:
        engine.index.client.close()
    typer.echo(f"\nSample query: {query['file']} (class {query['class']})")
    typer.echo(format_results(results))
    image = ctx.store.local_path(query["key"], ctx.settings.home / "cache")
    typer.echo(f"\nTry it: visearch search --category {category.name} --json {image}")
    typer.echo(f"demo pipeline finished in {time.monotonic() - started:.0f} s")
    if serve:
        from visearch.serve import serve_forever

        serve_forever(ctx.settings, port=port)
