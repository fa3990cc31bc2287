"""`visearch categories`, `search`, `recommend` and `duplicates`: what is indexed, and queries from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from visearch.cli.app import CategoryArg, CategoryOpt, OptionalCategoryOpt, app, one_category
from visearch.cli.output import echo_json, format_results
from visearch.entry_context import Context
from visearch.errors import InvalidImageError, InvalidQueryError

if TYPE_CHECKING:
    from visearch.search import SearchEngine
    from visearch.search_options import SearchAnswer


@app.command()
def categories(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the categories of the registry and whether each has a live index."""
    from visearch.index import open_index

    ctx = Context.from_env()
    index = open_index(ctx.settings)
    try:
        rows = []
        for category in ctx.registry.categories:
            live = index.live(category.name)
            count = index.count(live.name) if live else 0
            rows.append(
                {"name": category.name, "title": category.title, "index": live.name if live else None, "images": count}
            )
    finally:
        index.close()
    if as_json:
        echo_json(rows)
        return
    # Columns as wide as their longest entry: registry names and titles have no fixed length.
    name_width = max((len(category.name) for category in ctx.registry.categories), default=0)
    title_width = max((len(category.title) for category in ctx.registry.categories), default=0)
    for row in rows:
        index_text = row["index"] or "(not indexed)"
        typer.echo(
            f"{row['name']:<{name_width}}  {row['title']:<{title_width}}  {row['images']:>7} images  {index_text}"
        )


FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter", help='Qdrant filter JSON, e.g. \'{"must": [{"key": "article", "match": {"value": "Bag"}}]}\''
    ),
]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Number of results")]
MinSimilarityOpt = Annotated[float, typer.Option(help="Minimum similarity in percent (0-100)")]
ClassOpt = Annotated[str | None, typer.Option("--class", help="Only results of this class")]
OffsetOpt = Annotated[int, typer.Option(help="Results to skip (the next page's offset is printed)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def parse_filter_option(text: str | None) -> dict[str, Any] | None:
    """The --filter JSON as an object (the library checks it against the category's columns).

    Raises:
        InvalidQueryError: the text is not a JSON object.
    """
    from visearch.browse import filter_from_text

    return filter_from_text(text, "--filter")


def read_image(path: Path) -> bytes:
    """The bytes of an image file given on the command line.

    Raises:
        InvalidImageError: the file cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"cannot read {path}: {exc.strerror or exc}") from exc


@contextmanager
def open_engine(ctx: Context, category: str) -> Iterator[SearchEngine]:
    """A search engine over the home's index, for one command (``category`` checked first)."""
    from visearch.index import open_index
    from visearch.search import SearchEngine

    ctx.category(category)
    engine = SearchEngine(ctx.settings, ctx.registry, ctx.store, open_index(ctx.settings))
    try:
        yield engine
    finally:
        engine.close()


def echo_answer(category: str, answer: SearchAnswer, as_json: bool) -> None:
    """Print an answer: JSON, or the notice, the results table and the next page's offset."""
    if as_json:
        echo_json({"category": category, **answer.to_dict()})
        return
    if answer.notice:
        typer.echo(f"note: the query is {answer.notice} (similarities below its usual range)")
    typer.echo(format_results(answer.results, answer.score_kind))
    if answer.next_offset is not None:
        typer.echo(f"more: --offset {answer.next_offset}")


@app.command()
def search(
    category: CategoryOpt,
    image: Annotated[Path | None, typer.Argument(help="Query image file (optional with --text)")] = None,
    k: KOpt = 10,
    min_similarity: MinSimilarityOpt = 0.0,
    class_filter: ClassOpt = None,
    filter_json: FilterOpt = None,
    text: Annotated[
        str | None, typer.Option(help="Caption words: alone a text search, with IMAGE hybrid (both fused)")
    ] = None,
    offset: OffsetOpt = 0,
    diverse: Annotated[bool, typer.Option("--diverse", help="Varied results (MMR)")] = False,
    group_by_class: Annotated[bool, typer.Option("--group-by-class", help="The best hit of each class")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find the images of CATEGORY most similar to IMAGE, or whose captions hold --text, or both."""
    ctx = Context.from_env()
    if image is None and text is None:
        raise InvalidQueryError("give a query IMAGE, --text, or both")
    data = read_image(image) if image is not None else None
    options = {
        "k": k,
        "min_similarity": min_similarity,
        "class_filter": class_filter,
        "filter": parse_filter_option(filter_json),
        "text": text,
        "offset": offset,
        "diverse": diverse,
        "group_by_class": group_by_class,
    }
    with open_engine(ctx, category) as engine:
        answer = engine.search(category, data, **options)
    echo_answer(category, answer, as_json)


@app.command()
def recommend(
    category: CategoryOpt,
    like: Annotated[list[str] | None, typer.Option("--like", help="Id of a stored image to look like (repeat)")] = None,
    unlike: Annotated[
        list[str] | None, typer.Option("--unlike", help="Id of a stored image to look unlike (repeat)")
    ] = None,
    like_image: Annotated[list[Path] | None, typer.Option("--like-image", help="Image file to look like")] = None,
    unlike_image: Annotated[list[Path] | None, typer.Option("--unlike-image", help="Image file to look unlike")] = None,
    k: KOpt = 10,
    min_similarity: MinSimilarityOpt = 0.0,
    class_filter: ClassOpt = None,
    filter_json: FilterOpt = None,
    offset: OffsetOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """More like the --like examples, less like the --unlike ones (Qdrant's recommend, best_score)."""
    ctx = Context.from_env()
    liked = [read_image(path) for path in like_image or []]
    unliked = [read_image(path) for path in unlike_image or []]
    with open_engine(ctx, category) as engine:
        answer = engine.recommend(
            category,
            like or [],
            unlike or [],
            liked,
            unliked,
            k=k,
            min_similarity=min_similarity,
            class_filter=class_filter,
            filter=parse_filter_option(filter_json),
            offset=offset,
        )
    echo_answer(category, answer, as_json)


@app.command()
def duplicates(
    category_arg: CategoryArg = None,
    category: OptionalCategoryOpt = None,
    offset: Annotated[int, typer.Option(help="Pairs to skip")] = 0,
    limit: Annotated[int, typer.Option(help="Pairs to show (1-100)")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Near-duplicate pairs of the category's live index (cosine above its duplicate_threshold)."""
    category = one_category(category, category_arg)
    ctx = Context.from_env()
    with open_engine(ctx, category) as engine:
        page = engine.duplicates(category, offset=offset, limit=limit)
    if as_json:
        echo_json({"category": category, **page.to_dict()})
        return
    typer.echo(f"{page.total} pairs above {page.threshold:.2f} cosine similarity")
    for pair in page.pairs:
        typer.echo(f"{pair.similarity:>6.2f}%  {pair.first.file}  {pair.second.file}")
    if page.next_offset is not None:
        typer.echo(f"more: --offset {page.next_offset}")
