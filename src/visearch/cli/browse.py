"""`visearch browse`: a category's live index a page at a time, filtered, in a stable order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from visearch.cli.app import CategoryOpt, app
from visearch.cli.output import echo_json
from visearch.cli.search import FilterOpt, JsonOpt, open_engine
from visearch.entry_context import Context

if TYPE_CHECKING:
    from visearch.browse import BrowsePage

CAPTIONS_SHOWN = 60  # characters of the caption columns in one table row


def format_page(page: BrowsePage) -> str:
    """Rank, class, label, file and captions of each image; a hint when the page is empty."""
    if not page.items:
        return "no images on this page (past the end, or none match the filter)"
    class_width = max(5, *(len(item.cls) for item in page.items))
    file_width = max(4, *(len(item.file) for item in page.items))
    lines = [f"{'#':>5}  {'class':<{class_width}} {'label':>5}  {'file':<{file_width}}  captions"]
    for rank, item in enumerate(page.items, page.offset + 1):
        captions = ", ".join(f"{k}: {v}" for k, v in item.captions.items() if v not in (None, ""))
        label = "-" if item.label is None else str(item.label)
        lines.append(
            f"{rank:>5}  {item.cls:<{class_width}} {label:>5}  {item.file:<{file_width}}  {captions[:CAPTIONS_SHOWN]}"
        )
    return "\n".join(lines)


@app.command()
def browse(
    category: CategoryOpt,
    offset: Annotated[int, typer.Option(help="Images to skip (the next page's offset is printed)")] = 0,
    limit: Annotated[int, typer.Option(help="Images per page (1-100)")] = 20,
    filter_json: FilterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The images of a category a page at a time (stable order), optionally --filter'ed like `search`."""
    from visearch.browse import browse as browse_page
    from visearch.browse import filter_from_text

    ctx = Context.from_env()
    flt = filter_from_text(filter_json, "--filter")
    with open_engine(ctx, category) as engine:
        page = browse_page(engine, category, offset=offset, limit=limit, filter=flt)
    if as_json:
        echo_json({"category": category, **page.to_dict()})
        return
    typer.echo(format_page(page))
    typer.echo(f"more: --offset {page.next_offset}" if page.next_offset is not None else "end of the category")
