"""`visearch prepare ...`: bring a dataset from its native layout into a category (images/ + meta CSV)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from visearch.errors import ConfigError

if TYPE_CHECKING:
    from visearch.cli import Context
    from visearch.data.adapters.common import Candidate
    from visearch.data.meta import DataReport

prepare_app = typer.Typer(help="Bring a dataset into a category's layout (images/ + meta CSV).", no_args_is_help=True)
CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Category name from the registry")]
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

    found: dict[str, dict[str, int]] = {}

    def scan(rep: DataReport) -> list[Candidate]:
        candidates, found["labels"] = folder.scan(source, rep)
        return candidates

    run_prepare("folder", scan, labels=lambda: found["labels"], **_common(locals() | _NO_LIMITS))


@prepare_app.command("fashion-mnist")
def prepare_fashion_mnist(
    source: Annotated[Path, typer.Option(help="Folder of the IDX files")] = Path("/usr/share/datasets/fashion-mnist"),
    category: CategoryOpt = "fashion-mnist",
    per_class: Annotated[int | None, typer.Option(min=1, help="Images per class (default: all)")] = None,
    split: Annotated[str, typer.Option(help="t10k (10k images) or train (60k images)")] = "t10k",
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

    values = locals() | {"limit": None, "per_class": None, "min_per_class": 1}  # per_class is applied by the scan
    run_prepare("fashion-mnist", scan, labels=fashion_mnist.labels, **_common(values))


def run_prepare(
    dataset: str,
    scan: Callable[[DataReport], list[Candidate]],
    *,
    category: str | None,
    limit: int | None,
    per_class: int | None,
    min_per_class: int,
    dedupe: bool,
    max_distance: int,
    embeddings: bool,
    min_cosine: float,
    report_path: Path | None,
    labels: Callable[[], dict[str, int]] | None = None,
) -> None:
    """Shared by every dataset command: scan → load/check → duplicates → write; print the summary."""
    from visearch.cli import Context
    from visearch.data.adapters.runner import PrepareOptions, PrepareReport, prepare_category
    from visearch.data.dedupe import trunk_embedder

    ctx = Context.create()
    target = ctx.category(category or dataset)
    report = PrepareReport(dataset=dataset)
    candidates = scan(report)
    typer.echo(f"{dataset}: {len(candidates)} candidate images, {len(report.dropped)} dropped while scanning")
    options = PrepareOptions(limit=limit, per_class=per_class, min_per_class=min_per_class, dedupe=dedupe,
                             max_distance=None if max_distance < 0 else max_distance, min_cosine=min_cosine)  # fmt: skip
    embedder = trunk_embedder() if embeddings else None
    try:
        fixed = labels() if labels else None
        prepare_category(ctx.store, target, candidates, report, options=options, embedder=embedder, labels=fixed)
    finally:
        if report_path is not None:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
    typer.echo(report.summary())
    typer.echo(f"written to category {target.name} ({target.data_prefix}/)")


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

    run_prepare("shoes", lambda rep: shoes.scan(source, rep), **_common(locals()))


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

    run_prepare("dogs", lambda rep: dogs.scan(source, rep, crop=crop), **_common(locals()))


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
    run_prepare("celebrities", lambda rep: celebrities.scan(source, rep, rules=rules), **_common(locals()))


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

    run_prepare("logos", lambda rep: logos.scan(source, rep), **_common(locals()))


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

    run_prepare("fashion", lambda rep: fashion.scan(source, rep), **_common(locals()))


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

    run_prepare("logos-icons", lambda rep: logo_icons.scan(source, rep, size=size), **_common(locals()))


_NO_LIMITS = {"limit": None, "per_class": None, "min_per_class": 1}


def _common(values: dict[str, object]) -> dict[str, object]:
    """The shared options of a command's locals, named as run_prepare takes them."""
    names = ("category", "limit", "per_class", "min_per_class", "dedupe", "max_distance", "embeddings", "min_cosine")
    return {name: values[name] for name in names} | {"report_path": values["report"]}


@prepare_app.command("demo")
def prepare_demo() -> None:
    """Copy the bundled demo subset (1,000 Fashion-MNIST images) into category fashion-mnist."""
    from visearch.cli import Context

    ctx = Context.create()
    typer.echo(ensure_demo_data(ctx, force=True))


def demo_source() -> Path:
    return Path(str(resources.files("visearch") / "demo_data" / "fashion-mnist"))


def ensure_demo_data(ctx: Context, *, force: bool = False) -> str:
    from visearch.data.ingest import ingest_folder

    category = next((c for c in ctx.registry.categories if c.demo), None)
    if category is None:
        raise ConfigError("the registry has no category marked demo: true")
    if not force and ctx.store.exists(f"{category.data_prefix}/{category.meta}"):
        return f"demo data already in place for {category.name}"
    return ingest_folder(ctx.store, category, demo_source()).summary()
