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
