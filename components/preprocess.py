"""Component `preprocess`: validate the category's data, split by class, resolve the run's training parameters.

It takes every training parameter (``visearch.train_params.TrainParams``; -1 / "" keep the
category's registry value) and writes them, resolved, beside the manifest: the later steps read
them there. ``tests/components/test_params.py`` checks this signature against ``TrainParams``.
"""

from kfp.dsl import Dataset, Markdown, Output


def preprocess(
    category: str,
    manifest: Output[Dataset],
    data_report: Output[Markdown],
    pipeline_run: str = "",
    trunk_model: str = "",
    trunk_weights: str = "",
    embedder_layers: str = "",
    split: float = -1.0,
    holdout: float = -1.0,
    batch_size: int = -1,
    epochs: int = -1,
    patience: int = -1,
    validation: float = -1.0,
    lr: float = -1.0,
    trunk_lr_scale: float = -1.0,
    weight_decay: float = -1.0,
    sampler_m: int = -1,
    input_size: int = -1,
    loss: str = "",
    max_steps: int = -1,
    train_images_per_class: int = -1,
    eval_images_per_class: int = -1,
    seed: int = -1,
    accelerator: str = "",
) -> str:
    """Writes manifest.csv, report.json and params.json; returns the MLflow run id the later steps log to.

    ``data_report``: the data report (rows kept and dropped by reason, classes, the evaluation plan)
    as Markdown, which the Kubeflow dashboard shows.
    """
    given = dict(locals())  # first: the parameters only
    import json
    from pathlib import Path

    from components.errors import step_errors
    from components.params import training_overrides
    from visearch.data.manifest import load_manifest
    from visearch.reports import data_report_markdown
    from visearch.stages.preprocess import REPORT_FILE, preprocess_step

    with step_errors():
        run_id = preprocess_step(
            category, Path(manifest.path), overrides=training_overrides(given), pipeline_run=pipeline_run
        )
        folder = Path(manifest.path)
        summary = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        Path(data_report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(data_report.path).write_text(data_report_markdown(summary, load_manifest(folder)), encoding="utf-8")
        return run_id
