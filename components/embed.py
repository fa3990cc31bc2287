"""Component `embed`: vectors of the valid images of one shard of the category, with the champion model."""

from kfp.dsl import Dataset, Input, Model, Output


def embed(
    category: str, manifest: Input[Dataset], model: Input[Model], embeddings: Output[Dataset], shard: str = "0/1"
) -> None:
    """``shard`` "i/n" embeds that range of the manifest ("0/1": all). Resumable: finished parts are reused."""
    from pathlib import Path

    from components.errors import step_errors
    from visearch.pipeline_steps import pipeline_embed

    with step_errors():
        pipeline_embed(category, Path(manifest.path), Path(model.path), Path(embeddings.path), shard=shard)
