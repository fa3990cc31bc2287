"""`visearch preprocess|train|evaluate|embed|upsert`: the five pipeline steps, one command each.

Each step reads its inputs from and writes its outputs to folders under
``VISEARCH_HOME/work/<category>/`` unless told otherwise, so the commands chain in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from visearch.cli.app import CategoryArg, CategoryOpt, DirOpt, OptionalCategoryOpt, app, one_category
from visearch.cli.options import train_options
from visearch.cli.output import echo_json, format_metrics
from visearch.embed import BATCH_SIZE as EMBED_BATCH_SIZE
from visearch.entry_context import Context
from visearch.stages.folders import BASELINE, CHAMPION, EVALUATION, MANIFEST, TRAINED


@app.command()
def check(
    category_arg: CategoryArg = None,
    category: OptionalCategoryOpt = None,
    report: Annotated[Path | None, typer.Option(help="Also write the full report (JSON) to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Validate a category's data before any step: rows kept and dropped by reason, classes, sizes, evaluation.

    Also says whether the live index serves the registry's fields/captions or lags it (the next
    pipeline run then builds a new version). Exits 1 when the pipeline could not run on it (too few classes or images left, no evaluation possible).
    """
    from visearch.stages.preprocess import check_data

    category = one_category(category, category_arg)
    ctx = Context.from_env()
    _, data = check_data(*ctx.for_stage(category), show_progress=not as_json)
    index = index_report(ctx, category)
    full = {**data.to_dict(), "index": index}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(full, indent=2), encoding="utf-8")
    if as_json:
        echo_json(full)
    else:
        typer.echo(data.text())
        typer.echo(f"index: {index['note']}")
    if not data.plan.possible:
        raise typer.Exit(1)


def index_report(ctx: Context, category: str) -> dict[str, Any]:
    """The live index version and whether it serves the registry's fields/captions (``lags_registry``)."""
    from visearch.errors import VisearchError
    from visearch.index import open_index
    from visearch.stages.upsert import index_lag

    entry = ctx.category(category)
    try:
        index = open_index(ctx.settings)
    except VisearchError as exc:  # the data check stands on its own: an index that is down is only noted
        return {"live": None, "lags_registry": None, "note": f"not checked ({exc})"}
    try:
        live = index.live(category)
        lag = index_lag(index, entry)
    finally:
        index.close()
    if live is None:
        note = "none yet; the first pipeline run builds it"
    else:
        note = f"live {live.name}; " + (f"lags the registry: {lag}" if lag else "serves the registry's fields/captions")
    return {"live": live.name if live else None, "lags_registry": lag is not None, "note": note}


def _model_dir(ctx: Context, category: str, given: Path | None) -> Path:
    """The model to embed and index: the one given, else the gate's champion, else the fine-tuned model."""
    if given:
        return given
    champion = ctx.work(category, CHAMPION)
    return champion if (champion / "meta.json").is_file() else ctx.work(category, TRAINED)


@app.command()
@train_options()
def preprocess(category: CategoryOpt, out: DirOpt = None, *, overrides: dict[str, Any]) -> None:
    """Validate meta CSV + images and split by class into a manifest (bad rows are dropped and reported).

    The training parameters given here are resolved once and travel with the manifest (params.json):
    the later steps use them.
    """
    from visearch.stages.preprocess import run_preprocess

    ctx = Context.from_env()
    entry = ctx.category(category)
    path, summary = run_preprocess(
        ctx.settings, ctx.store, entry, ctx.work(category, MANIFEST, out), params=entry.train.with_overrides(overrides)
    )
    typer.echo(f"manifest: {path} (data hash {summary['data_hash']}; full report: {path.with_name('report.json')})")


@app.command()
@train_options()
def train(category: CategoryOpt, manifest: DirOpt = None, out: DirOpt = None, *, overrides: dict[str, Any]) -> None:
    """Fine-tune the trunk + embedder with pytorch-metric-learning; saves trunk.pth, embedder.pth, meta.json.

    The frozen trunk is saved beside it (the gate's second candidate). A model trained before on the
    same data with the same parameters is reused; an interrupted training resumes from its last epoch.
    """
    from visearch.stages.train import train_candidates

    ctx = Context.from_env()
    out_dir = ctx.work(category, TRAINED, out)
    result = train_candidates(
        *ctx.for_stage(category),
        ctx.work(category, MANIFEST, manifest),
        out_dir,
        ctx.work(category, BASELINE),
        overrides=overrides,
    )
    if not result.epoch_losses:
        typer.echo(f"model {result.version} reused: trained before on the same data with the same parameters")
        return
    kept = "last epoch" if result.best_epoch is None else f"best epoch {result.best_epoch + 1} by validation MAP@R"
    stopped = ", stopped early" if result.stopped_early else ""
    typer.echo(
        f"model {result.version} saved to {result.model_dir} "
        f"(epoch losses {result.epoch_losses}; {kept} of {len(result.epoch_losses)}{stopped})"
    )


@app.command()
@train_options(only=["eval_images_per_class"])
def evaluate(
    category: CategoryOpt,
    manifest: DirOpt = None,
    model: DirOpt = None,
    out: Annotated[Path | None, typer.Option(help="Folder of the report (report.json, embedding_map.png)")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """The pipeline's evaluation and gate: fine-tuned vs frozen vs the champion, in-domain and on held-out classes.

    P@1, MAP@R, R-precision, Recall@{1,5,10}. The gate's choice lands in work/<category>/champion
    (what `visearch embed` and `upsert` use by default) and, when it wins, becomes the MLflow champion.
    """
    from visearch.stages.evaluate import evaluate_stage

    ctx = Context.from_env()
    outcome = evaluate_stage(
        *ctx.for_stage(category),
        ctx.work(category, MANIFEST, manifest),
        model or ctx.work(category, TRAINED),
        ctx.work(category, BASELINE),
        ctx.work(category, EVALUATION, out),
        ctx.work(category, CHAMPION),
        overrides=overrides,
        tracker=ctx.tracker(),
    )
    typer.echo(format_metrics({k: v for k, v in outcome.report.items() if isinstance(v, dict)}))
    typer.echo(f"gate: {outcome.decision.reason}\nmodel to index: {outcome.champion_dir}")


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
    from visearch.stages.embed import output_name, run_embed

    part = Shard.parse(shard) if shard else None  # a bad i/n fails before the model loads
    ctx = Context.from_env()
    path = run_embed(
        *ctx.for_stage(category),
        ctx.work(category, MANIFEST, manifest),
        _model_dir(ctx, category, model),
        ctx.work(category, output_name(part), out),
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
    from visearch.stages.embed import output_name
    from visearch.stages.upsert import run_upsert

    ctx = Context.from_env()
    result = run_upsert(
        *ctx.for_stage(category),
        ctx.work(category, MANIFEST, manifest),
        _model_dir(ctx, category, model),
        embeddings or ctx.work(category, output_name(None)),
    )
    typer.echo(f"alias {category} -> {result.collection} ({result.count} points; previous {result.previous})")


@app.command()
def refresh(
    category: CategoryOpt,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="When the category's refresh policy says so, run the pipeline for it")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """Bring a live category up to date with its change log without training; say when it needs training.

    Applies any change the live index missed, counts what was added, replaced and removed since the
    live model was trained, records an MLflow run, and applies the registry's refresh policy.
    """
    from visearch.stages.refresh import refresh as refresh_category

    ctx = Context.from_env()
    outcome = refresh_category(*ctx.for_stage(category))
    if as_json:
        echo_json(outcome.to_dict())
    else:
        typer.echo(outcome.line())
    if outcome.retrain and retrain:
        from visearch.cli.pipeline import run_pipeline

        result = run_pipeline(ctx.settings, [category])
        typer.echo(result.describe())
