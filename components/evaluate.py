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
) -> str:
    """Returns the gate's reason; ``champion`` holds the new champion, or the kept one.

    The evaluation budget is the run's (``eval_images_per_class``, resolved by preprocess).
    """
    from pathlib import Path

    from components.errors import step_errors
    from visearch.stages.evaluate import evaluate_step

    with step_errors():
        outcome = evaluate_step(
            category,
            Path(manifest.path),
            run_id,
            Path(model.path),
            Path(baseline.path),
            Path(report.path),
            Path(champion.path),
        )
        for name, value in outcome.metrics.items():
            metrics.log_metric(name, value)
        champion.metadata.update({"version": outcome.champion_version, "promoted": outcome.decision.promoted or ""})
        return outcome.decision.reason
