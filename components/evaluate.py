"""Component `evaluate`: metrics of both candidates and the champion; the gate picks the model to index."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    category: str,
    manifest: Input[Dataset],
    run_id: str,
    model: Input[Model],
    baseline: Input[Model],
    metrics: Output[Metrics],
    report: Output[Artifact],
    champion: Output[Model],
    evaluation: Output[Markdown],
    retrieval_grid: Output[HTML],
) -> str:
    """Returns the gate's reason; ``champion`` holds the new champion, or the kept one.

    The evaluation budget is the run's (``eval_images_per_class``, resolved by preprocess). For the
    dashboard: ``evaluation``, the table of the models on both questions with the gate's decision
    (Markdown), and ``retrieval_grid``, held-out queries with their top results (HTML).
    """
    import shutil
    from pathlib import Path

    from components.errors import step_errors
    from visearch.stages.evaluate import GRID, TABLE, evaluate_step

    with step_errors():
        outcome = evaluate_step(
            category,
            Path(manifest.path),
            run_id,
            (Path(model.path), Path(baseline.path)),
            Path(report.path),
            Path(champion.path),
        )
        for name, value in outcome.metrics.items():
            metrics.log_metric(name, value)
        for name, artifact in ((TABLE, evaluation), (GRID, retrieval_grid)):
            Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(report.path) / name, artifact.path)
        champion.metadata.update({"version": outcome.champion_version, "promoted": outcome.decision.promoted or ""})
        return outcome.decision.reason
