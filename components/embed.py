"""Component `embed`: vectors of every valid image of the category, with the champion model."""

from kfp.dsl import Dataset, Input, Model, Output


def embed(category: str, manifest: Input[Dataset], model: Input[Model], embeddings: Output[Dataset]) -> None:
    """Resumable: finished shards of an interrupted run are kept and reused."""
    from pathlib import Path

    from components.errors import step_errors
    from visearch.pipeline_steps import pipeline_embed

    with step_errors():
        pipeline_embed(category, Path(manifest.path), Path(model.path), Path(embeddings.path))
