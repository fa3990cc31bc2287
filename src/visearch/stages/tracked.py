"""What every pipeline entry does first: build the context from the environment and join the category's MLflow run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from visearch.entry_context import Context

if TYPE_CHECKING:
    from visearch.tracking import TrackedRun


@contextmanager
def tracked_step(run_id: str) -> Iterator[tuple[Context, TrackedRun]]:
    """The context and the run ``run_id`` (started by the preprocess step); the run is marked FAILED if the step raises."""
    ctx = Context.from_env()
    run = ctx.tracker().run(run_id)
    with run.failing():
        yield ctx, run
