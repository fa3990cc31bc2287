"""Component `upsert`: new collection version, verified, alias swapped atomically (or reused as is)."""

from typing import List  # noqa: UP035 - kfp parses typing.List, not list

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def upsert(
    category: str,
    manifest: Input[Dataset],
    model: Input[Model],
    embeddings: Input[List[Dataset]],  # noqa: UP006
    run_id: str,
    index: Output[Metrics],
) -> str:
    """Returns the live collection name; an interrupted upsert finishes on re-run.

    ``embeddings``: every shard's output of the embed step (``dsl.Collected``), joined in shard order.
    """
    from pathlib import Path

    from components.errors import step_errors
    from visearch.stages.upsert import upsert_step

    with step_errors():
        result = upsert_step(
            category, Path(manifest.path), Path(model.path), [Path(e.path) for e in embeddings], run_id
        )
        index.log_metric("points", result.count)
        index.log_metric("reused", float(result.reused))
        index.metadata.update({"collection": result.collection, "previous": result.previous or ""})
        return result.collection
