"""Component `evaluate`: metrics of both candidates and the champion; the gate picks the model to index."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def evaluate(
    category: str,
    manifest: Input[Dataset],
    run_id: str,
    model: Input[Model],
    baseline: Input[Model],
    metrics: Output[Metrics],
    report: Output[Artifact],
    champion: Output[Model],
    eval_images_per_class: int = -1,
) -> str:
    """Returns the gate's reason; ``champion`` holds the new champion, or the kept one.

    ``eval_images_per_class``: the evaluation budget (-1 keeps the category's registry value).
    """
    from pathlib import Path

    from components.errors import step_errors
    from components.params import overrides
    from visearch.pipeline_steps import pipeline_evaluate

    with step_errors():
        outcome = pipeline_evaluate(
            category,
            Path(manifest.path),
            run_id,
            Path(model.path),
            Path(baseline.path),
            Path(report.path),
            Path(champion.path),
            overrides=overrides(eval_images_per_class=eval_images_per_class),
        )
        for name, value in outcome.metrics.items():
            metrics.log_metric(name, value)
        champion.metadata.update({"version": outcome.champion_version, "promoted": outcome.decision.promoted or ""})
        return outcome.decision.reason
