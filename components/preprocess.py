"""Component `preprocess`: validate the category's data, split by class, start its MLflow run."""

from kfp.dsl import Dataset, Output


def preprocess(
    category: str,
    manifest: Output[Dataset],
    split: float = -1.0,
    pipeline_run: str = "",
) -> str:
    """Writes manifest.csv + report.json; returns the MLflow run id the later steps log to."""
    from pathlib import Path

    from components.errors import step_errors
    from components.params import overrides
    from visearch.pipeline_steps import pipeline_preprocess

    with step_errors():
        return pipeline_preprocess(
            category, Path(manifest.path), overrides=overrides(split=split), pipeline_run=pipeline_run
        )
