"""The training parameters as command-line options, generated from their one declaration (``TrainParams``).

``@train_options()`` adds one ``--name`` option per ``TrainParams`` field (``run_parameters()``) to a
command; the command receives the values the user gave as one ``overrides`` dict, so a field added
to ``TrainParams`` is an option of every such command with no change here.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer

from visearch.train_params import RunParameter, run_parameters

PANEL = "Training parameters (default: the category's registry entry)"
Command = TypeVar("Command", bound=Callable[..., Any])


def _option(parameter: RunParameter) -> inspect.Parameter:
    option = typer.Option(parameter.option, help=parameter.help, rich_help_panel=PANEL)
    annotation = Annotated[parameter.kind | None, option]  # type: ignore[name-defined]
    return inspect.Parameter(parameter.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def train_options(only: Iterable[str] | None = None) -> Callable[[Command], Command]:
    """Give a command one option per training parameter (or those named in ``only``).

    The decorated function takes ``overrides: dict[str, Any]``: the options given, by field name
    (the others are absent, so each category keeps its registry value).
    """
    wanted = [p for p in run_parameters() if only is None or p.name in set(only)]

    def decorate(command: Command) -> Command:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            parameter.replace(annotation=hints.get(name, parameter.annotation))
            for name, parameter in inspect.signature(command).parameters.items()
            if name != "overrides"
        ]
        names = {p.name for p in wanted}

        @functools.wraps(command)
        def with_overrides(**values: Any) -> Any:
            given = {name: values.pop(name) for name in list(values) if name in names}
            return command(**values, overrides={name: value for name, value in given.items() if value is not None})

        options = [_option(p) for p in wanted]
        with_overrides.__signature__ = inspect.Signature(own + options)  # type: ignore[attr-defined]
        with_overrides.__annotations__ = {p.name: p.annotation for p in own + options}
        del with_overrides.__wrapped__  # typer must read the signature above, not the wrapped one's
        return typing.cast(Command, with_overrides)

    return decorate
