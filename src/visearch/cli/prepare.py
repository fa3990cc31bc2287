"""`visearch prepare ...`: bring a dataset from its native layout into a category (images/ + meta CSV)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from visearch.cli.app import CategoryOpt, app

if TYPE_CHECKING:
    from visearch.data.adapters.common import Candidate
    from visearch.data.adapters.runner import PrepareOptions
    from visearch.data.meta import DataReport

# Past this many images a category without a training budget trains for a long time on few cores
# (70,000 Fashion-MNIST: 100 per class trains in 47 s, benchmarks/results/scale.md).
LARGE_CATEGORY = 20_000
prepare_app = typer.Typer(help="Bring a dataset into a category's layout (images/ + meta CSV).", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
SourceOpt = Annotated[Path, typer.Option("--source", "-s", help="The dataset folder, as its publisher ships it")]
DatasetCategoryOpt = Annotated[
    str | None, typer.Option("--category", "-c", help="Target category (default: the dataset's name)")
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Stop after N images (quick trials)")]
PerClassOpt = Annotated[int | None, typer.Option(min=1, help="At most N images per class")]
MinPerClassOpt = Annotated[int, typer.Option(min=1, help="Drop classes with fewer images")]
DedupeOpt = Annotated[bool, typer.Option("--dedupe", help="Drop exact and near duplicates (always reported)")]
DistanceOpt = Annotated[
    int, typer.Option(min=-1, max=32, help="Near duplicate: pHash Hamming distance <= this (-1: exact only)")
]
EmbeddingsOpt = Annotated[
    bool, typer.Option("--embeddings", help="Also compare frozen-trunk embeddings (slower, finds more)")
]
MinCosineOpt = Annotated[float, typer.Option(min=0.5, max=1.0, help="Embedding duplicate: cosine >= this")]
ReportOpt = Annotated[Path | None, typer.Option(help="Also write the full report (JSON) to this file")]


# --- prepare -----------------------------------------------------------------------------------
@prepare_app.command("folder")
def prepare_folder(
    source: Annotated[Path, typer.Option(help="Folder with meta.csv and images/")],
    category: CategoryOpt,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """Copy a folder holding meta.csv + images/ into the category's data location."""
    from visearch.data.adapters import folder

    found: dict[str, int] = {}

    def scan(rep: DataReport) -> list[Candidate]:
        candidates, labels = folder.scan(source, rep)
        found.update(labels)
        return candidates

    options = _options(None, None, 1, dedupe, max_distance, min_cosine)
    run_prepare("folder", scan, category, options, embeddings, report, labels=lambda: found)


@prepare_app.command("fashion-mnist")
def prepare_fashion_mnist(
    source: Annotated[Path, typer.Option(help="Folder of the IDX files")] = Path("/usr/share/datasets/fashion-mnist"),
    category: CategoryOpt = "fashion-mnist",
    per_class: Annotated[int | None, typer.Option(min=1, help="Images per class (default: all)")] = None,
    split: Annotated[
        str, typer.Option(help="t10k (10k images), train (60k images) or all (both: 70k images)")
    ] = "t10k",
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """Fashion-MNIST IDX files (Debian `dataset-fashion-mnist`) → PNGs + meta CSV."""
    from visearch.data.adapters import fashion_mnist

    def scan(rep: DataReport) -> list[Candidate]:
        return fashion_mnist.scan(source, rep, split=split, per_class=per_class)

    options = _options(None, None, 1, dedupe, max_distance, min_cosine)
    run_prepare("fashion-mnist", scan, category, options, embeddings, report, labels=fashion_mnist.labels)


@prepare_app.command("shoes")
def prepare_shoes(
    source: SourceOpt,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 2,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """UT Zappos50K (ut-zap50k-images-square/<Category>/<SubCategory>/<Brand>/*.jpg)."""
    from visearch.data.adapters import shoes

    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("shoes", partial(shoes.scan, source), category, options, embeddings, report)


@prepare_app.command("dogs")
def prepare_dogs(
    source: SourceOpt,
    crop: Annotated[bool, typer.Option("--crop", help="One image per annotated dog box (VOC XML)")] = False,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 2,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """Stanford Dogs (Images/<wnid>-<breed>/*.jpg + Annotation/ VOC XML)."""
    from visearch.data.adapters import dogs

    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("dogs", partial(dogs.scan, source, crop=crop), category, options, embeddings, report)


@prepare_app.command("celebrities")
def prepare_celebrities(
    source: SourceOpt,
    min_kb: Annotated[int, typer.Option(min=0, help="Keep files larger than this many kB (seed: 30)")] = 30,
    min_face_score: Annotated[float, typer.Option(help="Drop images whose face score is lower")] = 1.0,
    keep_second_face: Annotated[bool, typer.Option("--keep-second-face", help="Keep photos with 2 faces")] = False,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 2,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """IMDB-WIKI (imdb_crop/NN/*.jpg + imdb.mat): RGB, > 30 kB, one face with a good score."""
    from visearch.data.adapters import celebrities

    rules = celebrities.CelebrityRules(min_kb * 1000, min_face_score, not keep_second_face)
    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("celebrities", partial(celebrities.scan, source, rules=rules), category, options, embeddings, report)


@prepare_app.command("logos")
def prepare_logos(
    source: SourceOpt,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 2,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """LogoDet-3K (<Category>/<Brand>/<n>.jpg + <n>.xml): every logo box cropped to its own image."""
    from visearch.data.adapters import logos

    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("logos", partial(logos.scan, source), category, options, embeddings, report)


@prepare_app.command("fashion")
def prepare_fashion(
    source: SourceOpt,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 2,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """Kaggle Fashion Product Images (images/<id>.jpg + styles.csv): class = articleType."""
    from visearch.data.adapters import fashion

    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("fashion", partial(fashion.scan, source), category, options, embeddings, report)


@prepare_app.command("logos-icons")
def prepare_logo_icons(
    source: Annotated[Path, typer.Option("--source", "-s", help="node_modules with devicon + simple-icons")],
    size: Annotated[int, typer.Option(min=32, max=1024, help="Side of the rendered PNGs")] = 128,
    category: DatasetCategoryOpt = None,
    limit: LimitOpt = None,
    per_class: PerClassOpt = None,
    min_per_class: MinPerClassOpt = 5,
    dedupe: DedupeOpt = False,
    max_distance: DistanceOpt = 2,
    embeddings: EmbeddingsOpt = False,
    min_cosine: MinCosineOpt = 0.95,
    report: ReportOpt = None,
) -> None:
    """Brand logos from the npm packages devicon (MIT) + simple-icons (CC0), rendered with cairosvg."""
    from visearch.data.adapters import logo_icons

    options = _options(limit, per_class, min_per_class, dedupe, max_distance, min_cosine)
    run_prepare("logos-icons", partial(logo_icons.scan, source, size=size), category, options, embeddings, report)


def _options(
    limit: int | None, per_class: int | None, min_per_class: int, dedupe: bool, max_distance: int, min_cosine: float
) -> PrepareOptions:
    from visearch.data.adapters.runner import PrepareOptions

    return PrepareOptions(
        limit=limit,
        per_class=per_class,
        min_per_class=min_per_class,
        dedupe=dedupe,
        max_distance=None if max_distance < 0 else max_distance,
        min_cosine=min_cosine,
    )


def run_prepare(
    dataset: str,
    scan: Callable[[DataReport], list[Candidate]],
    category: str | None,
    options: PrepareOptions,
    embeddings: bool,
    report_path: Path | None,
    *,
    labels: Callable[[], dict[str, int]] | None = None,
) -> None:
    """Shared by every dataset command: scan → load/check → duplicates → write; print the summary.

    Args:
        dataset: The dataset's name (and the default category).
        scan: The adapter's scan, bound to its source and options; fills the report with scan drops.
        category: Target category (None: the dataset's name).
        options: Limits and duplicate handling.
        embeddings: Also compare frozen-trunk embeddings for duplicates.
        report_path: Also write the JSON report there.
        labels: Fixed class → label map, called after the scan (default: sorted class order).
    """
    from visearch.context import Context
    from visearch.data.adapters.runner import PrepareReport, prepare_category
    from visearch.embed import trunk_embedder

    ctx = Context.from_env()
    target = ctx.category(category or dataset)
    report = PrepareReport(dataset=dataset)
    candidates = scan(report)
    typer.echo(f"{dataset}: {len(candidates)} candidate images, {len(report.dropped)} dropped while scanning")
    embedder = trunk_embedder() if embeddings else None
    try:
        # Staged under the data home, not /tmp: a whole dataset passes through it.
        prepare_category(
            ctx.store,
            target,
            candidates,
            report,
            options=options,
            embedder=embedder,
            staging_root=ctx.settings.work_dir / "prepare",
            labels=labels() if labels else None,
        )
    finally:
        if report_path is not None:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
    typer.echo(report.summary())
    typer.echo(f"written to category {target.name} ({target.data_prefix}/)")
    if report.kept > LARGE_CATEGORY and target.train.train_images_per_class is None:
        typer.echo(
            f"note: {target.name} trains on every one of its training images (no train_images_per_class in its "
            f"registry entry); with {report.kept} images, a training budget (--train-images-per-class N, or the "
            "entry's train_images_per_class) keeps the pipeline to minutes while every image is still indexed"
            + ("; the fashion-mnist-full entry sets one: -c fashion-mnist-full" if dataset == "fashion-mnist" else "")
        )


@prepare_app.command("demo")
def prepare_demo() -> None:
    """Copy the bundled demo subset (1,000 Fashion-MNIST images) into category fashion-mnist."""
    from visearch.context import Context
    from visearch.data.demo import ensure_demo_data

    ctx = Context.from_env()
    typer.echo(ensure_demo_data(ctx.registry, ctx.store, force=True))
