"""Component `train`: fine-tune trunk + embedder; the frozen trunk comes along as the second candidate."""

from kfp.dsl import Dataset, Input, Model, Output


def train(
    category: str,
    manifest: Input[Dataset],
    run_id: str,
    model: Output[Model],
    baseline: Output[Model],
    trunk_model: str = "",
    embedder_layers: str = "",
    split: float = -1.0,
    batch_size: int = -1,
    epochs: int = -1,
    patience: int = -1,
    lr: float = -1.0,
    weight_decay: float = -1.0,
    sampler_m: int = -1,
    input_size: int = -1,
    max_steps: int = -1,
    train_images_per_class: int = -1,
) -> None:
    """Negative numbers and empty strings keep the category's registry value.

    ``split`` was applied by preprocess; it comes along so the MLflow run records the value used.
    """
    from pathlib import Path

    from components.errors import step_errors
    from components.params import overrides
    from visearch.pipeline_steps import pipeline_train

    with step_errors():
        given = overrides(
            trunk_model=trunk_model,
            embedder_layers=embedder_layers,
            split=split,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            lr=lr,
            weight_decay=weight_decay,
            sampler_m=sampler_m,
            input_size=input_size,
            max_steps=max_steps,
            train_images_per_class=train_images_per_class,
        )
        result = pipeline_train(
            category, Path(manifest.path), run_id, Path(model.path), Path(baseline.path), overrides=given
        )
        model.metadata.update(
            {
                "version": result.version,
                "epoch_losses": result.epoch_losses,
                "best_epoch": -1 if result.best_epoch is None else result.best_epoch,
            }
        )
