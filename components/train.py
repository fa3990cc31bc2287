"""Component `train`: fine-tune trunk + embedder; the frozen trunk comes along as the second candidate."""

from kfp.dsl import Dataset, Input, Model, Output


def train(category: str, manifest: Input[Dataset], run_id: str, model: Output[Model], baseline: Output[Model]) -> None:
    """Trains (or resumes, or reuses) with the parameters preprocess resolved beside the manifest."""
    from pathlib import Path

    from components.errors import step_errors
    from visearch.stages.train import train_step

    with step_errors():
        result = train_step(category, Path(manifest.path), run_id, Path(model.path), Path(baseline.path))
        model.metadata.update(
            {
                "version": result.version,
                "epoch_losses": result.epoch_losses,
                "best_epoch": -1 if result.best_epoch is None else result.best_epoch,
            }
        )
