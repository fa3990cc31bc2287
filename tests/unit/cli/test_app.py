"""The `visearch` command tree: every command and group has help."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["prepare"],
        ["index"],
        ["preprocess"],
        ["train"],
        ["evaluate"],
        ["embed"],
        ["upsert"],
        ["search"],
        ["demo"],
        ["serve"],
        ["categories"],
        ["index", "rollback"],
        ["prepare", "folder"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    from visearch.cli import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def _commands(command, path=()):  # type: ignore[no-untyped-def]
    """Every leaf command of the click tree with its path."""
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_every_command_on_one_category_takes_the_category_option() -> None:
    """One way to name the category everywhere: `--category/-c` (a positional CATEGORY may stay as an alias)."""
    import typer

    from visearch.cli import app

    found = []
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if param.name in {"category", "category_arg"}:
                found.append(" ".join(path))
                options = {name for p in command.params if p.name == "category" for name in p.opts}
                assert {"--category", "-c"} <= options, f"visearch {' '.join(path)} lacks --category/-c"
    assert {"check", "duplicates", "search", "upsert", "prepare folder"} <= set(found)
