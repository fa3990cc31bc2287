"""`visearch preprocess|train|evaluate|embed|upsert`: the five pipeline steps, one command each.

Each step reads its inputs from and writes its outputs to folders under
``VISEARCH_HOME/work/<category>/`` unless told otherwise, so the commands chain in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from visearch.cli.app import CategoryOpt, DirOpt, app
from visearch.cli.options import (
    BatchSizeOpt,
    EmbedderLayersOpt,
    EpochsOpt,
    EvalImagesPerClassOpt,
    InputSizeOpt,
    LrOpt,
    MaxStepsOpt,
    PatienceOpt,
    SamplerMOpt,
    SplitOpt,
    TrainImagesPerClassOpt,
    TrunkModelOpt,
    WeightDecayOpt,
)
from visearch.cli.output import echo_json, format_metrics
from visearch.context import Context
from visearch.embed import BATCH_SIZE as EMBED_BATCH_SIZE


@app.command()
def check(
    category: Annotated[str, typer.Argument(help="Category name from the registry")],
    report: Annotated[Path | None, typer.Option(help="Also write the full report (JSON) to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Validate a category's data before any step: rows kept and dropped by reason, classes, sizes, evaluation.

    Exits 1 when the pipeline could not run on it (too few classes or images left, no evaluation possible).
    """
    from visearch.steps import check_data

    ctx = Context.from_env()
    _, data = check_data(ctx.settings, ctx.store, ctx.category(category), show_progress=not as_json)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(data.to_dict(), indent=2), encoding="utf-8")
    if as_json:
        echo_json(data.to_dict())
    else:
        typer.echo(data.text())
    if not data.plan.possible:
        raise typer.Exit(1)


@app.command()
def preprocess(category: CategoryOpt, out: DirOpt = None) -> None:
    """Validate meta CSV + images and split by class into a manifest (bad rows are dropped and reported)."""
    from visearch.steps import run_preprocess

    ctx = Context.from_env()
    path, summary = run_preprocess(ctx.settings, ctx.store, ctx.category(category), ctx.work(category, "manifest", out))
    typer.echo(f"manifest: {path} (data hash {summary['data_hash']}; full report: {path.with_name('report.json')})")


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
    patience: PatienceOpt = None,
    lr: LrOpt = None,
    weight_decay: WeightDecayOpt = None,
    sampler_m: SamplerMOpt = None,
    input_size: InputSizeOpt = None,
    max_steps: MaxStepsOpt = None,
    train_images_per_class: TrainImagesPerClassOpt = None,
) -> None:
    """Fine-tune the trunk + embedder with pytorch-metric-learning; saves trunk.pth, embedder.pth, meta.json."""
    from visearch.steps import run_train

    ctx = Context.from_env()
    params = ctx.category(category).train.with_overrides(
        dict(
            trunk_model=trunk_model,
            embedder_layers=embedder_layers,
            split=split,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            lr=lr,
            weight_decay=weight_decay,
            sampler_m=sampler_m,
            input_size=input_size,
            max_steps=max_steps,
            train_images_per_class=train_images_per_class,
        )
    )
    manifest_dir = ctx.work(category, "manifest", manifest)
    result = run_train(ctx.settings, ctx.store, manifest_dir, params, ctx.work(category, "train", out))
    kept = "last epoch" if result.best_epoch is None else f"best epoch {result.best_epoch + 1} by validation MAP@R"
    stopped = ", stopped early" if result.stopped_early else ""
    typer.echo(
        f"model {result.version} saved to {result.model_dir} "
        f"(epoch losses {result.epoch_losses}; {kept} of {len(result.epoch_losses)}{stopped})"
    )


@app.command()
def evaluate(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    out: Annotated[Path | None, typer.Option(help="metrics JSON path")] = None,
    eval_images_per_class: EvalImagesPerClassOpt = None,
) -> None:
    """P@1, MAP@R, R-precision, Recall@{1,5,10}: frozen baseline and fine-tuned, in-domain and class-disjoint."""
    from visearch.steps import run_evaluate, save_baseline

    ctx = Context.from_env()
    params = ctx.category(category).train.with_overrides({"eval_images_per_class": eval_images_per_class})
    baseline = save_baseline(params, ctx.work(category, "baseline"))
    models = {"baseline": baseline, "tuned": model or ctx.work(category, "train") / "model"}
    out_path = out or ctx.work(category, "metrics.json")
    report = run_evaluate(
        ctx.settings,
        ctx.store,
        ctx.work(category, "manifest", manifest),
        models,
        out_path,
        images_per_class=params.eval_images_per_class,
        seed=params.seed,
    )
    typer.echo(format_metrics(report))


@app.command()
def embed(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    out: DirOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass")] = EMBED_BATCH_SIZE,
    shard: Annotated[
        str | None, typer.Option(help="Embed only shard i/n of the manifest (0-based, e.g. 0/2); upsert joins them")
    ] = None,
) -> None:
    """Embed every valid image of the category in batches (resumable), or one shard of them."""
    from visearch.embed import Shard
    from visearch.steps import run_embed

    part = Shard.parse(shard) if shard else None  # a bad i/n fails before the model loads
    ctx = Context.from_env()
    path = run_embed(
        ctx.settings,
        ctx.store,
        ctx.work(category, "manifest", manifest),
        model or ctx.work(category, "train") / "model",
        # Shards of one category land apart unless told where: each is one part of the whole.
        ctx.work(category, f"embeddings-{part.index}of{part.count}" if part and part.count > 1 else "embeddings", out),
        batch_size=batch_size,
        shard=part,
    )
    typer.echo(f"embeddings: {path}")


@app.command()
def upsert(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    embeddings: Annotated[
        list[Path] | None,
        typer.Option(
            help="Embeddings directory; repeat it for each shard (default: under VISEARCH_HOME/work/<category>)"
        ),
    ] = None,
) -> None:
    """Write a new collection version, verify it, and swap the category alias to it atomically."""
    from visearch.steps import run_upsert

    ctx = Context.from_env()
    result = run_upsert(
        ctx.settings,
        ctx.store,
        ctx.category(category),
        ctx.work(category, "manifest", manifest),
        model or ctx.work(category, "train") / "model",
        embeddings or ctx.work(category, "embeddings"),
    )
    typer.echo(f"alias {category} -> {result.collection} ({result.count} points; previous {result.previous})")
