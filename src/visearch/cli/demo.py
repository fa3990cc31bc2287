"""`visearch demo`: the Kubeflow pipeline (kfp.local) on the bundled demo category, then a sample query."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from visearch.cli.app import app
from visearch.cli.output import format_metrics, format_results
from visearch.cli.serve import serve_forever
from visearch.data.demo import demo_category, ensure_demo_data
from visearch.data.manifest import cache_dir, load_manifest
from visearch.entry_context import Context
from visearch.errors import ConfigError

MAP = "mean_average_precision_at_r"


@app.command()
def demo(
    serve: Annotated[bool, typer.Option(help="Start the service with its UI at the end")] = True,
    port: Annotated[int, typer.Option(help="Service port")] = 3000,
) -> None:
    """The main job end to end on the bundled demo data: pipeline, metrics, a sample query, then the service."""
    run_demo(Context.from_env(), serve=serve, port=port)


def run_demo(ctx: Context, *, serve: bool, port: int) -> None:
    """Pipeline for the demo category, its metrics and gate decision, a sample query, then the service."""
    try:
        from visearch.cli.pipeline import run_pipeline
    except ImportError as exc:
        raise ConfigError("the demo runs the Kubeflow pipeline locally: install the pipeline extra (kfp)") from exc

    started = time.monotonic()
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader announces CPU features at INFO
    typer.echo(ensure_demo_data(ctx.registry, ctx.store))
    category = demo_category(ctx.registry)
    log_file = ctx.settings.home / "kfp" / "demo.log"
    typer.echo(
        f"\nRunning the pipeline for {category.name} with kfp.local "
        f"(preprocess → train → evaluate → embed → upsert; full log: {log_file})"
    )
    result = run_pipeline(ctx.settings, [category.name], log_file=log_file).categories[0]
    report = {name: entry for name, entry in result.report.items() if name != "gate"}
    typer.echo("\nEvaluation (baseline = frozen pretrained trunk, tuned = fine-tuned, champion = before this run):")
    typer.echo(format_metrics(report))
    typer.echo(summary_line(report))
    typer.echo(f"gate: {result.reason}")
    typer.echo(f"index: alias {category.name} -> {result.collection}")
    typer.echo(f"MLflow run {result.run_id}: mlflow ui --backend-store-uri {ctx.settings.tracking_uri}")
    typer.echo(f"artifacts: {result.folder}")
    sample_query(ctx, category.name, result.artifacts["preprocess/manifest"], port=port if serve else None)
    typer.echo(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    if serve:
        serve_forever(ctx.settings, port=port)


def summary_line(report: dict[str, Any]) -> str:
    """Fine-tuned vs frozen MAP@R on both questions (design.md "Evaluation: two questions")."""
    parts = []
    for evaluation, label in (("in_domain", "in-domain"), ("class_disjoint", "held-out classes")):
        try:
            frozen, tuned = report["baseline"][evaluation][MAP], report["tuned"][evaluation][MAP]
        except KeyError:
            continue
        ratio = f" ({tuned / frozen:.2f}x)" if frozen else ""
        parts.append(f"{label} MAP@R {frozen:.3f} -> {tuned:.3f}{ratio}")
    return "fine-tuned vs frozen: " + "; ".join(parts) if parts else ""


def sample_query(ctx: Context, category: str, manifest_dir: Path, *, port: int | None = None) -> None:
    """Search with a held-out image, as a user of the service would."""
    from visearch.index import open_index
    from visearch.search import SearchEngine

    manifest = load_manifest(manifest_dir)
    query = manifest[manifest["split"] != "train"].iloc[0]
    engine = SearchEngine(ctx.settings, ctx.registry, ctx.store, open_index(ctx.settings))
    try:
        results = engine.search(category, ctx.store.get_bytes(query["key"]), k=5).results
    finally:
        engine.close()
    typer.echo(f"\nSample query: {query['file']} (class {query['class']})")
    typer.echo(format_results(results))
    image = ctx.store.local_path(query["key"], cache_dir(ctx.settings))
    typer.echo(f"\nTry it: visearch search --category {category} --json {image}")
    if port:
        typer.echo(
            f"  or ask the service below: curl -F image=@{image} -F category={category} -F k=5 "
            f"http://127.0.0.1:{port}/search"
        )
