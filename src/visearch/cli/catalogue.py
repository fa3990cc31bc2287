"""`visearch add`, `remove` and `sync`: write to a live category at once, without a rebuild.

Thin: the writes are :class:`visearch.catalogue.Catalogue`'s, the folder comparison is
:mod:`visearch.catalogue.sync`'s. Bad input is refused before anything is written (one ``error:``
line); a sync skips a bad row and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from visearch.cli.app import CategoryOpt, app
from visearch.cli.output import echo_json
from visearch.cli.search import open_engine, read_image
from visearch.entry_context import Context
from visearch.errors import InvalidRowError, UnknownImageError

if TYPE_CHECKING:
    from visearch.catalogue import Catalogue, WriteResult
    from visearch.search import SearchEngine

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
NEAR_DUPLICATES = 3


@contextmanager
def open_writes(category: str) -> Iterator[tuple[SearchEngine, Catalogue]]:
    """The engine (for queries) and the category's catalogue (for writes), on the home's index."""
    from visearch.live_writes import open_catalogue

    with open_engine(Context.from_env(), category) as engine:
        yield engine, open_catalogue(engine, category)


def parse_row(text: str | None, cls: str | None) -> dict[str, Any]:
    """The --row JSON object with --class set in it.

    Raises:
        InvalidRowError: not a JSON object, or a --class that disagrees with the row's class.
    """
    try:
        row = json.loads(text) if text else {}
    except ValueError as exc:
        raise InvalidRowError("row", f"--row is not JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise InvalidRowError("row", f"--row must be a JSON object, got {type(row).__name__}")
    if cls is not None:
        if row.get("class") not in (None, cls):
            raise InvalidRowError("class", f"--class {cls!r} but --row says {row['class']!r}")
        row["class"] = cls
    return row


def read_images(paths: list[Path]) -> list[bytes]:
    """The bytes of each image file (errors name the file)."""
    return [read_image(path) for path in paths]


def near_duplicates(engine: SearchEngine, category: str, pid: str) -> list[dict[str, Any]]:
    """Up to three images of the category above its duplicate threshold to the one just written."""
    threshold = engine.registry.get(category).duplicate_threshold
    answer = engine.similar(category, pid, k=NEAR_DUPLICATES, min_similarity=threshold * 100)
    return [{"id": r.id, "file": r.file, "class": r.cls, "similarity": round(r.similarity, 2)} for r in answer.results]


def added(path: Path, result: WriteResult, duplicates: list[dict[str, Any]]) -> dict[str, Any]:
    """What one add printed (and its JSON)."""
    return {
        "image": str(path),
        "id": result.id,
        "file": result.file,
        "status": "created" if result.created else "unchanged",
        "model_version": result.model_version,
        "new_class": result.new_class,
        "class": result.record.row.get("class") if result.record else None,
        "near_duplicates": duplicates,
    }


def echo_added(entry: dict[str, Any]) -> None:
    """The lines of one add: id and status, new class, near-duplicates."""
    typer.echo(
        f"{entry['image']}: {entry['id']} {entry['status']} "
        f"(file {entry['file']}, embedded by model {entry['model_version']})"
    )
    if entry["new_class"]:
        typer.echo(f"  new class {entry['class']!r}: not seen in training until the next training run")
    for dup in entry["near_duplicates"]:
        typer.echo(f"  near-duplicate {dup['similarity']:.1f}%  {dup['file']}  ({dup['id']})")


@app.command()
def add(
    category: CategoryOpt,
    images: Annotated[list[Path], typer.Argument(help="Image files to add")],
    cls: Annotated[str | None, typer.Option("--class", help="Class of the images (new classes are welcome)")] = None,
    row: Annotated[
        str | None, typer.Option("--row", help='Row JSON for every image, e.g. \'{"article": "tote"}\'')
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add IMAGEs to CATEGORY's live index at once (and to its data): searchable by the next query."""
    from visearch.catalogue.sync import check_adds

    values = parse_row(row, cls)
    datas = read_images(images)
    with open_writes(category) as (engine, catalogue):
        check_adds(catalogue, datas, values, [str(path) for path in images])  # before anything is written
        entries = []
        for path, data in zip(images, datas, strict=True):
            result = catalogue.add(data, values)
            entry = added(path, result, near_duplicates(engine, category, result.id))
            entries.append(entry)
            if not as_json:
                echo_added(entry)
    if as_json:
        echo_json(entries)


@app.command()
def remove(
    category: CategoryOpt,
    ids: Annotated[list[str], typer.Argument(help="Point ids to remove (as search prints them)")],
) -> None:
    """Remove images from CATEGORY's live index at once and from its data (every id checked first)."""
    from visearch.index import point_id

    with open_writes(category) as (_, catalogue):
        catalogue.index.require_live(category)
        known = {point_id(category, str(file)): str(file) for file in catalogue.rows()["file"]}
        for pid in ids:
            if pid not in known:
                raise UnknownImageError(f"id: no image {pid} in category {category!r}")
        for pid in dict.fromkeys(ids):
            result = catalogue.remove(pid)
            typer.echo(f"{pid}: removed (file {result.file})")


@app.command()
def sync(
    category: CategoryOpt,
    source: Annotated[Path, typer.Option("--source", help="Folder with meta.csv and images/ (the truth)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, write nothing")] = False,
    meta: Annotated[str, typer.Option(help="Meta CSV file name in the folder")] = "meta.csv",
    progress: Annotated[bool, typer.Option(help="Progress bar")] = True,
) -> None:
    """Make CATEGORY hold what the --source folder holds: add, replace and remove by content hash and row."""
    from tqdm import tqdm

    from visearch.catalogue.sync import apply_sync, plan_sync

    with open_writes(category) as (_, catalogue):
        plan = plan_sync(catalogue, source, meta)
        for line in plan.lines():
            typer.echo(line)
        if dry_run:
            typer.echo("dry run: nothing written")
            return
        with tqdm(total=len(plan.items), desc=f"sync {category}", unit="img", disable=not progress) as bar:
            outcome = apply_sync(catalogue, plan, lambda _: bar.update())
    for item, reason in outcome.failed:
        typer.echo(f"failed   {item.op} {item.file}: {reason}")
    typer.echo(
        f"synced {len(outcome.done)} of {len(plan.items)} changes in {outcome.seconds:.1f} s "
        f"({outcome.images_per_second:.1f} images/s); {len(outcome.failed)} failed, {len(plan.skipped)} skipped"
    )
    if outcome.failed or plan.skipped:
        raise typer.Exit(1)
