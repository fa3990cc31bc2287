"""A failed step ends with one ``error:`` line, as the CLI does, not a Python traceback in the run's log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from visearch.errors import VisearchError


@contextmanager
def step_errors() -> Iterator[None]:
    """Turn a VisearchError (bad data, an engine down, ...) into ``error: <message>`` and exit status 1."""
    try:
        yield
    except VisearchError as exc:
        raise SystemExit(f"error: {exc}") from None
