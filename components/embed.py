"""Component `embed`: vectors of the valid images of one shard of the category, with the champion model."""

from kfp.dsl import Dataset, Input, Model, Output


def embed(
    category: str, manifest: Input[Dataset], model: Input[Model], embeddings: Output[Dataset], shard: str = "0/1"
) -> None:
    """``shard`` "i/n" embeds that range of the manifest ("0/1": all). Resumable: finished parts are reused."""
    from pathlib import Path

    from components.errors import step_errors
    from visearch.stages.embed import embed_step

    with step_errors():
        embed_step(category, Path(manifest.path), Path(model.path), Path(embeddings.path), shard=shard)
