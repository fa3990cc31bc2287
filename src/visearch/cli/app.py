"""The Typer apps of the `visearch` command; the command modules register on them.

Defined apart from the commands so that every command module can import them without a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Category-based visual similarity search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
index_app = typer.Typer(help="Inspect and administer the Qdrant collections.", no_args_is_help=True)
app.add_typer(index_app, name="index")

CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Category name from the registry")]
DirOpt = Annotated[Path | None, typer.Option(help="Directory (default: under VISEARCH_HOME/work/<category>)")]
# Commands that once took the category as an argument keep that form as an alias of --category.
CategoryArg = Annotated[
    str | None, typer.Argument(metavar="[CATEGORY]", help="Same as --category (the older positional form)")
]
OptionalCategoryOpt = Annotated[str | None, typer.Option("--category", "-c", help="Category name from the registry")]


def one_category(option: str | None, argument: str | None) -> str:
    """The category of a command that takes ``--category/-c`` or, as an alias, a positional CATEGORY.

    Raises:
        ConfigError: neither is given, or both name different categories.
    """
    from visearch.errors import ConfigError

    if option and argument and option != argument:
        raise ConfigError(f"two categories given: --category {option} and {argument}; name one")
    name = option or argument
    if not name:
        raise ConfigError("name the category: --category NAME (or -c NAME)")
    return name
