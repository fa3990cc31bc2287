"""`visearch prepare ...`: bring a dataset from its native layout into a category (images/ + meta CSV)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from visearch.errors import ConfigError

if TYPE_CHECKING:
    from visearch.cli import Context

prepare_app = typer.Typer(help="Bring a dataset into a category's layout (images/ + meta CSV).", no_args_is_help=True)
CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Category name from the registry")]


# --- prepare -----------------------------------------------------------------------------------
@prepare_app.command("folder")
def prepare_folder(
    source: Annotated[Path, typer.Option(help="Folder with meta.csv and images/")],
    category: CategoryOpt,
) -> None:
    """Copy a folder holding meta.csv + images/ into the category's data location."""
    from visearch.cli import Context
    from visearch.data.ingest import ingest_folder

    ctx = Context.create()
    report = ingest_folder(ctx.store, ctx.category(category), source)
    typer.echo(report.summary())


@prepare_app.command("fashion-mnist")
def prepare_fashion_mnist(
    source: Annotated[Path, typer.Option(help="Folder of the IDX files")] = Path("/usr/share/datasets/fashion-mnist"),
    category: CategoryOpt = "fashion-mnist",
    per_class: Annotated[int | None, typer.Option(min=1, help="Images per class (default: all)")] = None,
    split: Annotated[str, typer.Option(help="t10k (10k images) or train (60k images)")] = "t10k",
) -> None:
    """Fashion-MNIST IDX files (Debian `dataset-fashion-mnist`) → PNGs + meta CSV."""
    from visearch.cli import Context
    from visearch.data.adapters.fashion_mnist import iter_images
    from visearch.data.ingest import write_category

    ctx = Context.create()
    count = write_category(ctx.store, ctx.category(category), iter_images(source, split=split, per_class=per_class))
    typer.echo(f"{count} images written to category {category}")


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
