"""Component `upsert`: new collection version, verified, alias swapped atomically (or reused as is)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def upsert(
    category: str,
    manifest: Input[Dataset],
    model: Input[Model],
    embeddings: Input[Dataset],
    run_id: str,
    index: Output[Metrics],
) -> str:
    """Returns the live collection name; an interrupted upsert finishes on re-run."""
    from pathlib import Path

    from components.errors import step_errors
    from visearch.pipeline_steps import pipeline_upsert

    with step_errors():
        result = pipeline_upsert(category, Path(manifest.path), Path(model.path), Path(embeddings.path), run_id)
        index.log_metric("points", result.count)
        index.log_metric("reused", float(result.reused))
        index.metadata.update({"collection": result.collection, "previous": result.previous or ""})
        return result.collection
