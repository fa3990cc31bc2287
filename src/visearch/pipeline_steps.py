"""Pipeline steps as the kfp components call them: settings from the environment, MLflow tracked.

Each function is one component's whole body: build the context from the environment, resolve
the category's training parameters with the pipeline's overrides, call the step in
``visearch.steps`` and track it in the category's MLflow run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from visearch.categories import Category, TrainParams
from visearch.context import Context
from visearch.errors import ConfigError
from visearch.steps import (
    UpsertResult,
    load_manifest,
    manifest_hash,
    run_embed,
    run_preprocess,
    run_train,
    run_upsert,
    save_baseline,
)

if TYPE_CHECKING:
    from visearch.gate import GateOutcome
    from visearch.train import TrainResult


def resolve_params(category: Category, overrides: dict[str, Any] | None = None) -> TrainParams:
    """The category's registry params with pipeline overrides.

    A pipeline parameter cannot be "unset" in KFP, so a negative number or an empty string means
    "keep the registry value"; ``embedder_layers`` may be given as ``"512,128"``.
    """
    values = category.train.model_dump()
    for key, value in (overrides or {}).items():
        if (
            value is None
            or value == ""
            or (isinstance(value, int | float) and not isinstance(value, bool) and value < 0)
        ):
            continue
        if key == "embedder_layers" and isinstance(value, str):
            value = [int(part) for part in value.split(",") if part.strip()]
        values[key] = value
    try:
        return TrainParams.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid training parameter {first['loc'][0]}: {first['msg']}") from exc


def pipeline_preprocess(category: str, manifest_dir: Path, *, overrides: dict[str, Any] | None = None,
                        pipeline_run: str = "") -> str:  # fmt: skip
    """Step 1: start the category's MLflow run, validate and split; returns the MLflow run id."""
    ctx = Context.from_env()
    cat = ctx.registry.get(category)
    tracker = ctx.tracker()
    run = tracker.run(tracker.start_run(category, tags={"kfp.run": pipeline_run} if pipeline_run else None))
    with run.failing():
        run_preprocess(ctx.settings, ctx.store, cat, manifest_dir, params=resolve_params(cat, overrides), run=run)
    return run.run_id


def pipeline_train(category: str, manifest_dir: Path, run_id: str, model_dir: Path, baseline_dir: Path, *,
                   overrides: dict[str, Any] | None = None) -> TrainResult:  # fmt: skip
    """Step 2: fine-tune (model → ``model_dir``) and save the frozen trunk (→ ``baseline_dir``): two candidates."""
    from visearch.gate import ARTIFACT_PATHS, FROZEN, copy_model

    ctx = Context.from_env()
    params = resolve_params(ctx.registry.get(category), overrides)
    run = ctx.tracker().run(run_id)
    with run.failing(), tempfile.TemporaryDirectory(prefix="visearch-train-") as work:
        # Checkpoints stay out of the output artifact: only the model files are the step's output.
        result = run_train(ctx.settings, ctx.store, manifest_dir, params, Path(work), run=run)
        copy_model(result.model_dir, model_dir)
        result.model_dir = model_dir
        save_baseline(params, baseline_dir, onnx=True)
        run.log_model_dir(baseline_dir, ARTIFACT_PATHS[FROZEN])
    return result


def pipeline_evaluate(category: str, manifest_dir: Path, run_id: str, model_dir: Path, baseline_dir: Path,
                      report_dir: Path, champion_dir: Path) -> GateOutcome:  # fmt: skip
    """Step 3: evaluate both candidates and the champion; the gate decides which model to index."""
    from visearch.gate import FROZEN, TUNED, evaluate_and_gate

    ctx = Context.from_env()
    tracker = ctx.tracker()
    run = tracker.run(run_id)
    with run.failing():
        outcome = evaluate_and_gate(ctx.settings, ctx.store, ctx.registry.get(category), manifest_dir,
                                    {TUNED: model_dir, FROZEN: baseline_dir}, report_dir, champion_dir,
                                    tracker=tracker, run=run)  # fmt: skip
    print(f"gate for {category}: {outcome.decision.reason}")  # the run says why, in its log
    return outcome


def pipeline_embed(category: str, manifest_dir: Path, model_dir: Path, out_dir: Path) -> Path:
    """Step 4: embed every valid image with the champion (resumes in a stable scratch folder)."""
    from visearch.model import read_spec

    ctx = Context.from_env()
    version = read_spec(model_dir).version
    data_hash = manifest_hash(load_manifest(manifest_dir))
    scratch = ctx.settings.work_dir / category / "embed-scratch" / f"{version}-{data_hash}"
    return run_embed(ctx.settings, ctx.store, manifest_dir, model_dir, out_dir, scratch=scratch)


def pipeline_upsert(category: str, manifest_dir: Path, model_dir: Path, embeddings_dir: Path,
                    run_id: str) -> UpsertResult:  # fmt: skip
    """Step 5: new collection version (or the same one, resumed), verified, alias swapped; ends the run."""
    ctx = Context.from_env()
    run = ctx.tracker().run(run_id)
    with run.failing():
        result = run_upsert(ctx.settings, ctx.store, ctx.registry.get(category), manifest_dir, model_dir,
                            embeddings_dir, run=run)  # fmt: skip
    run.end()
    print(f"index {category}: alias -> {result.collection} ({result.count} points, reused={result.reused})")
    return result
