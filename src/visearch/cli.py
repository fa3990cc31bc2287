"""The `visearch` command: every pipeline step, search, index admin, the demo and the service."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from visearch.categories import Category, TrainParams
from visearch.cli_options import (
    BatchSizeOpt,
    EmbedderLayersOpt,
    EpochsOpt,
    InputSizeOpt,
    LrOpt,
    MaxStepsOpt,
    SamplerMOpt,
    SplitOpt,
    TrunkModelOpt,
    WeightDecayOpt,
)
from visearch.context import Context
from visearch.embed import BATCH_SIZE as EMBED_BATCH_SIZE
from visearch.errors import ConfigError, InvalidImageError, VisearchError
from visearch.settings import Settings

app = typer.Typer(help="Category-based visual similarity search.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
index_app = typer.Typer(help="Inspect and administer the Qdrant collections.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _register_subcommands() -> None:
    """Sub-apps with their own modules (each owns one area of the CLI); registered once."""
    from visearch.cli_prepare import prepare_app

    if any(group.name == "prepare" for group in app.registered_groups):
        return
    app.add_typer(prepare_app, name="prepare")
    try:
        from visearch.cli_pipeline import pipeline_app
    except ImportError:  # the pipeline extra (kfp) is not installed
        return
    app.add_typer(pipeline_app, name="pipeline")


CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Category name from the registry")]
DirOpt = Annotated[Path | None, typer.Option(help="Directory (default: under VISEARCH_HOME/work/<category>)")]


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def train_params(category: Category, overrides: dict[str, Any]) -> TrainParams:
    """The category's registry params with the options given on the command line."""
    from visearch.pipeline_steps import resolve_params

    return resolve_params(category, {key: value for key, value in overrides.items() if value is not None})


def parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--embedder-layers takes comma-separated integers, got {text!r}") from exc


# --- registry ----------------------------------------------------------------------------------
@app.command()
def categories(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the categories of the registry and whether each has a live index."""
    from visearch.index import open_index

    ctx = Context.from_env()
    index = open_index(ctx.settings)
    rows = []
    for category in ctx.registry.categories:
        live = index.live(category.name)
        rows.append({"name": category.name, "title": category.title,
                     "index": live.name if live else None, "images": index.count(live.name) if live else 0})  # fmt: skip
    index.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['name']:<15} {row['title']:<25} {row['images']:>7} images  {row['index'] or '(not indexed)'}")


# --- the five steps ---------------------------------------------------------------------------
@app.command()
def preprocess(category: CategoryOpt, out: DirOpt = None) -> None:
    """Validate meta CSV + images and split by class into a manifest (bad files are reported)."""
    from visearch.steps import run_preprocess

    ctx = Context.from_env()
    path, summary = run_preprocess(ctx.settings, ctx.store, ctx.category(category), ctx.work(category, "manifest", out))
    typer.echo(f"manifest: {path}")
    echo_json({k: v for k, v in summary.items() if k != "dropped"} | {"dropped": len(summary["dropped"])})


@app.command()
def train(
    category: CategoryOpt,
    manifest: DirOpt = None,
    out: DirOpt = None,
    trunk_model: TrunkModelOpt = None,
    embedder_layers: EmbedderLayersOpt = None,
    split: SplitOpt = None,
    batch_size: BatchSizeOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    weight_decay: WeightDecayOpt = None,
    sampler_m: SamplerMOpt = None,
    input_size: InputSizeOpt = None,
    max_steps: MaxStepsOpt = None,
) -> None:
    """Fine-tune the trunk + embedder with pytorch-metric-learning; saves trunk.pth, embedder.pth, meta.json."""
    from visearch.steps import run_train

    ctx = Context.from_env()
    cat = ctx.category(category)
    params = train_params(cat, dict(trunk_model=trunk_model, embedder_layers=parse_layers(embedder_layers),
                                    split=split, batch_size=batch_size, epochs=epochs, lr=lr,
                                    weight_decay=weight_decay, sampler_m=sampler_m, input_size=input_size,
                                    max_steps=max_steps))  # fmt: skip
    result = run_train(ctx.settings, ctx.store, ctx.work(category, "manifest", manifest), params,
                       ctx.work(category, "train", out))  # fmt: skip
    typer.echo(f"model {result.version} saved to {result.model_dir} (epoch losses {result.epoch_losses})")


@app.command()
def evaluate(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    out: Annotated[Path | None, typer.Option(help="metrics JSON path")] = None,
) -> None:
    """P@1, MAP@R, R-precision, Recall@{1,5,10}: frozen baseline and fine-tuned, in-domain and class-disjoint."""
    from visearch.steps import run_evaluate, save_baseline

    ctx = Context.from_env()
    baseline = save_baseline(ctx.category(category).train, ctx.work(category, "baseline"))
    models = {
        "baseline": baseline,
        "tuned": ctx.work(category, "train", None) / "model" if model is None else model,
    }
    report = run_evaluate(ctx.settings, ctx.store, ctx.work(category, "manifest", manifest), models,
                          out or ctx.work(category, "metrics.json"))  # fmt: skip
    typer.echo(format_metrics(report))


def format_metrics(report: dict[str, Any]) -> str:
    """A table: one row per (model, evaluation), columns the metrics."""
    from visearch.evaluate import METRICS

    short = {"precision_at_1": "P@1", "mean_average_precision_at_r": "MAP@R", "r_precision": "R-prec",
             "recall_at_1": "R@1", "recall_at_5": "R@5", "recall_at_10": "R@10"}  # fmt: skip
    lines = [f"{'model':<10} {'evaluation':<15} " + " ".join(f"{short[m]:>7}" for m in METRICS)]
    for name, result in report.items():
        for evaluation in ("in_domain", "class_disjoint"):
            if evaluation in result:
                values = " ".join(f"{result[evaluation][m]:>7.3f}" for m in METRICS)
                lines.append(f"{name:<10} {evaluation:<15} {values}")
    return "\n".join(lines)


@app.command()
def embed(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    out: DirOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass")] = EMBED_BATCH_SIZE,
) -> None:
    """Embed every valid image of the category in batches (resumable)."""
    from visearch.steps import run_embed

    ctx = Context.from_env()
    path = run_embed(ctx.settings, ctx.store, ctx.work(category, "manifest", manifest),
                     model or ctx.work(category, "train") / "model", ctx.work(category, "embeddings", out),
                     batch_size=batch_size)  # fmt: skip
    typer.echo(f"embeddings: {path}")


@app.command()
def upsert(category: CategoryOpt, manifest: DirOpt = None, model: DirOpt = None, embeddings: DirOpt = None) -> None:
    """Write a new collection version, verify it, and swap the category alias to it atomically."""
    from visearch.steps import run_upsert

    ctx = Context.from_env()
    result = run_upsert(ctx.settings, ctx.store, ctx.category(category), ctx.work(category, "manifest", manifest),
                        model or ctx.work(category, "train") / "model", ctx.work(category, "embeddings", embeddings))  # fmt: skip
    typer.echo(f"alias {category} -> {result.collection} ({result.count} points; previous {result.previous})")


# --- search and index admin -------------------------------------------------------------------
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


def format_results(results: list[Any]) -> str:
    if not results:
        return "no results above the minimum similarity"
    lines = [f"{'#':>2} {'similarity':>10}  {'class':<15} file"]
    lines += [f"{i:>2} {r.similarity:>9.1f}%  {r.cls:<15} {r.file}" for i, r in enumerate(results, 1)]
    return "\n".join(lines)


@index_app.command("status")
def index_status(category: CategoryOpt) -> None:
    """The live collection of CATEGORY and the versions kept for rollback."""
    from visearch.index import open_index

    ctx = Context.from_env()
    ctx.category(category)
    index = open_index(ctx.settings)
    live = index.live(category)
    for version in index.versions(category):
        typer.echo(
            f"{'*' if live and live.name == version.name else ' '} {version.name} ({index.status(version.name)})"
        )
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


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
) -> None:
    """Start the BentoML service (REST + OpenAPI at /docs) with the Gradio UI at /ui."""
    from visearch.serve import serve_forever

    serve_forever(Settings(), port=port, host=host)


# --- demo ---------------------------------------------------------------------------------------
@app.command()
def demo(
    serve: Annotated[bool, typer.Option(help="Start the service with its UI at the end")] = True,
    port: Annotated[int, typer.Option(help="Service port")] = 3000,
) -> None:
    """The main job end to end on the bundled demo data: pipeline, metrics, a sample query, then the service."""
    from visearch.demo import run_demo

    run_demo(Context.from_env(), serve=serve, port=port)


def main() -> None:
    _register_subcommands()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "alembic", "mlflow", "bentoml", "kfp", "PML", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app()
    except VisearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
