"""`visearch prepare ...`: bring a dataset from its native layout into a category (images/ + meta CSV)."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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


# --- the adapters: one command each, built from this table ------------------------------------
Scan = Callable[["DataReport"], list["Candidate"]]
Binding = tuple[Scan, Callable[[], dict[str, int]] | None]


@dataclass(frozen=True)
class Adapter:
    """One ``visearch prepare <name>`` command: its dataset, its own options and how they bind its scan.

    ``bind`` gets the command's values by option name and returns the adapter's scan (and, for
    datasets with fixed labels, the class → label map). ``budgets``: the command takes ``--limit``,
    ``--per-class`` and ``--min-per-class`` (default ``min_per_class``).
    """

    name: str
    help: str
    bind: Callable[[dict[str, Any]], Binding]
    options: tuple[inspect.Parameter, ...] = ()
    budgets: bool = True
    min_per_class: int = 2


def _option(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _module(name: str) -> Any:
    return importlib.import_module(f"visearch.data.adapters.{name}")


def _source_scan(module: str, **fixed: Any) -> Callable[[dict[str, Any]], Binding]:
    """The adapter's ``scan(source, report, **options)`` with the command's ``--source`` and the named options."""
    return lambda values: (
        partial(_module(module).scan, values["source"], **{k: values[v] for k, v in fixed.items()}),
        None,
    )


def _bind_folder(values: dict[str, Any]) -> Binding:
    found: dict[str, int] = {}

    def scan(report: DataReport) -> list[Candidate]:
        candidates, labels = _module("folder").scan(values["source"], report)
        found.update(labels)
        return candidates

    return scan, lambda: found


def _bind_fashion_mnist(values: dict[str, Any]) -> Binding:
    module = _module("fashion_mnist")
    return partial(module.scan, values["source"], split=values["split"], per_class=values["per_class"]), module.labels


def _bind_celebrities(values: dict[str, Any]) -> Binding:
    module = _module("celebrities")
    rules = module.CelebrityRules(values["min_kb"] * 1000, values["min_face_score"], not values["keep_second_face"])
    return partial(module.scan, values["source"], rules=rules), None


SOURCE = _option("source", SourceOpt)
ADAPTERS = (
    Adapter(
        "folder",
        "Copy a folder holding meta.csv + images/, or one folder per class (ImageFolder layout, no CSV: "
        "classes from the folder names, labels in sorted order), into the category's data location.",
        _bind_folder,
        (
            _option(
                "source",
                Annotated[Path, typer.Option(help="Folder with meta.csv and images/, or with one folder per class")],
            ),
            _option("category", CategoryOpt),
        ),
        budgets=False,
    ),
    Adapter(
        "fashion-mnist",
        "Fashion-MNIST IDX files (Debian `dataset-fashion-mnist`) → PNGs + meta CSV.",
        _bind_fashion_mnist,
        (
            _option(
                "source",
                Annotated[Path, typer.Option(help="Folder of the IDX files")],
                Path("/usr/share/datasets/fashion-mnist"),
            ),
            _option("category", CategoryOpt, "fashion-mnist"),
            _option(
                "per_class", Annotated[int | None, typer.Option(min=1, help="Images per class (default: all)")], None
            ),
            _option(
                "split",
                Annotated[str, typer.Option(help="t10k (10k images), train (60k images) or all (both: 70k images)")],
                "t10k",
            ),
        ),
        budgets=False,
    ),
    Adapter(
        "shoes",
        "UT Zappos50K (ut-zap50k-images-square/<Category>/<SubCategory>/<Brand>/*.jpg).",
        _source_scan("shoes"),
        (SOURCE,),
    ),
    Adapter(
        "dogs",
        "Stanford Dogs (Images/<wnid>-<breed>/*.jpg + Annotation/ VOC XML).",
        _source_scan("dogs", crop="crop"),
        (
            SOURCE,
            _option(
                "crop", Annotated[bool, typer.Option("--crop", help="One image per annotated dog box (VOC XML)")], False
            ),
        ),
    ),
    Adapter(
        "celebrities",
        "IMDB-WIKI (imdb_crop/NN/*.jpg + imdb.mat): RGB, > 30 kB, one face with a good score.",
        _bind_celebrities,
        (
            SOURCE,
            _option(
                "min_kb", Annotated[int, typer.Option(min=0, help="Keep files larger than this many kB (seed: 30)")], 30
            ),
            _option(
                "min_face_score", Annotated[float, typer.Option(help="Drop images whose face score is lower")], 1.0
            ),
            _option(
                "keep_second_face",
                Annotated[bool, typer.Option("--keep-second-face", help="Keep photos with 2 faces")],
                False,
            ),
        ),
    ),
    Adapter(
        "logos",
        "LogoDet-3K (<Category>/<Brand>/<n>.jpg + <n>.xml): every logo box cropped to its own image.",
        _source_scan("logos"),
        (SOURCE,),
    ),
    Adapter(
        "fashion",
        "Kaggle Fashion Product Images (images/<id>.jpg + styles.csv): class = articleType.",
        _source_scan("fashion"),
        (SOURCE,),
    ),
    Adapter(
        "logos-icons",
        "Brand logos from the npm packages devicon (MIT) + simple-icons (CC0), rendered with cairosvg.",
        _source_scan("logo_icons", size="size"),
        (
            _option(
                "source",
                Annotated[Path, typer.Option("--source", "-s", help="node_modules with devicon + simple-icons")],
            ),
            _option("size", Annotated[int, typer.Option(min=32, max=1024, help="Side of the rendered PNGs")], 128),
        ),
        min_per_class=5,
    ),
)


def _command(adapter: Adapter) -> Callable[..., None]:
    """The typer command of one adapter: its own options, the budgets, the duplicate handling and the report."""

    def command(**values: Any) -> None:
        scan, labels = adapter.bind(values)
        options = _options(
            values.get("limit"),
            values.get("per_class") if adapter.budgets else None,
            values.get("min_per_class", 1),
            values["dedupe"],
            values["max_distance"],
            values["min_cosine"],
        )
        run_prepare(
            adapter.name, scan, values.get("category"), options, values["embeddings"], values["report"], labels=labels
        )

    own = {option.name for option in adapter.options}
    shared = [
        _option("category", DatasetCategoryOpt, None),
        *(
            (
                _option("limit", LimitOpt, None),
                _option("per_class", PerClassOpt, None),
                _option("min_per_class", MinPerClassOpt, adapter.min_per_class),
            )
            if adapter.budgets
            else ()
        ),
        _option("dedupe", DedupeOpt, False),
        _option("max_distance", DistanceOpt, 2),
        _option("embeddings", EmbeddingsOpt, False),
        _option("min_cosine", MinCosineOpt, 0.95),
        _option("report", ReportOpt, None),
    ]
    parameters = [*adapter.options, *(p for p in shared if p.name not in own)]
    # Options with no default come first (Python's rule for a signature; the order typer lists them in).
    parameters.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = adapter.help
    command.__name__ = f"prepare_{adapter.name.replace('-', '_')}"
    return command


for _adapter in ADAPTERS:
    prepare_app.command(_adapter.name)(_command(_adapter))


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
    from visearch.data.adapters.runner import PrepareReport, prepare_category
    from visearch.embed import trunk_embedder
    from visearch.entry_context import Context

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
    from visearch.data.demo import ensure_demo_data
    from visearch.entry_context import Context

    ctx = Context.from_env()
    typer.echo(ensure_demo_data(ctx.registry, ctx.store, force=True))
