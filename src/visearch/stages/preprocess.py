"""Stage 1, preprocess: validate the category's data, split it by class, resolve its training parameters.

Writes ``manifest.csv`` (the valid rows and their split), ``report.json`` (rows kept and dropped by
reason, the evaluation plan), ``params.json`` (the category's training parameters with the run's
overrides applied) and ``changes.json`` (the position in the category's change log its rows were
read at) to one folder. The later stages read their parameters from that folder, so a
run's parameters are resolved once, here, whoever runs the stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visearch.categories import Category, TrainParams
from visearch.entry_context import Context
from visearch.errors import DataError
from visearch.settings import Settings
from visearch.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

    from visearch.data.summary import DataSummary
    from visearch.tracking import TrackedRun

PARAMS_FILE = "params.json"
CHANGES_FILE = "changes.json"  # the change-log position the manifest was read at
REPORT_FILE = "report.json"


def check_data(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    *,
    params: TrainParams | None = None,
    show_progress: bool = True,
    changes_upto: int | None = None,
) -> tuple[pd.DataFrame, DataSummary]:
    """Validate the category's data and split it: the manifest and what it amounts to (writes nothing).

    The data is the category's base rows with its change log applied (the living catalogue: images
    users added, replaced and removed), up to the log position ``changes_upto`` (None: all of it).
    """
    from visearch.catalogue import ChangeLog, catalogue_view
    from visearch.data.checks import DataRules, split_by_class, validate_category
    from visearch.data.manifest import cache_dir
    from visearch.data.summary import DataSummary, evaluation_plan

    params = params or category.train
    rules = DataRules.from_settings(settings)
    records = ChangeLog(store, category).records(upto=changes_upto)

    def with_changes(base: pd.DataFrame) -> pd.DataFrame:
        return catalogue_view(base, records, category)

    found = validate_category(
        category,
        store,
        cache_dir(settings),
        rules=rules,
        show_progress=show_progress,
        changes=with_changes if records else None,
    )
    manifest = split_by_class(
        found.frame,
        split=params.split,
        holdout=params.holdout,
        seed=params.seed,
        min_images_per_class=rules.min_images_per_class,
        validation=params.validation,
    )
    plan = evaluation_plan(
        manifest,
        holdout=params.holdout,
        min_images_per_class=rules.min_images_per_class,
        validation=params.validation,
    )
    return manifest, DataSummary.of(category.name, manifest, found.report, found.sizes, plan)


def run_preprocess(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    out_dir: Path,
    *,
    params: TrainParams | None = None,
    show_progress: bool = True,
    run: TrackedRun | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Validate the category's data and write ``manifest.csv``, ``report.json`` and ``params.json`` to ``out_dir``.

    ``params``: the training parameters of this run (default: the category's). Prints the data
    summary (rows dropped by reason, classes, which evaluation will run). With ``run``, the
    dataset's size, split and data hash go to MLflow as params and the report as an artifact.
    """
    from visearch.catalogue import ChangeLog
    from visearch.data.manifest import MANIFEST, manifest_hash

    params = params or category.train
    # The log position this run's data is read at: the upsert replays what arrives after it.
    seq = ChangeLog(store, category).last_seq()
    manifest, data = check_data(settings, store, category, params=params, show_progress=show_progress, changes_upto=seq)
    if not data.plan.possible:
        raise DataError(f"{data.text()}\nadd images or classes so that one evaluation is possible")
    if show_progress:
        print(data.text(), flush=True)  # the step's log says what was dropped and which evaluation runs
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    splits = {str(name): int(n) for name, n in manifest["split"].value_counts().items()}
    summary = {
        **data.to_dict(),
        "splits": splits,
        "split_seed": params.seed,
        "data_hash": manifest_hash(manifest),
        "changes_seq": seq,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / PARAMS_FILE).write_text(params.model_dump_json(indent=2), encoding="utf-8")
    (out_dir / CHANGES_FILE).write_text(json.dumps({"seq": seq}), encoding="utf-8")
    if run:
        run.log_params(
            {
                "dataset_size": len(manifest),
                "dataset_dropped": len(data.report.dropped),
                "classes": data.classes,
                "split_seed": params.seed,
                "data_hash": summary["data_hash"],
                "data_prefix": category.data_prefix,
                "evaluation": data.plan.line(),
                "validation": data.plan.validation_line(),
                **{f"images_{k}": v for k, v in splits.items()},
            }
        )
        run.log_artifact(out_dir / REPORT_FILE, "data")
        run.log_dataset(
            manifest, name=category.name, digest=summary["data_hash"], source=store.uri(category.data_prefix)
        )
    return out_dir / MANIFEST, summary


def read_params(manifest_dir: Path, category: Category, overrides: dict[str, Any] | None = None) -> TrainParams:
    """The parameters preprocess resolved for this manifest, with ``overrides`` applied on top.

    A manifest written before params travelled with it (no ``params.json``) takes the category's.
    """
    path = manifest_dir / PARAMS_FILE
    params = TrainParams.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else category.train
    return params.with_overrides(overrides)


def changes_seq(manifest_dir: Path) -> int:
    """The change-log position a manifest was read at (0 for a manifest written before the log existed)."""
    path = manifest_dir / CHANGES_FILE
    return int(json.loads(path.read_text(encoding="utf-8"))["seq"]) if path.is_file() else 0


def preprocess_step(
    category: str, manifest_dir: Path, *, overrides: dict[str, Any] | None = None, pipeline_run: str = ""
) -> str:
    """The pipeline entry: start the category's MLflow run, validate and split; returns the run id."""
    ctx = Context.from_env()
    entry = ctx.category(category)
    tracker = ctx.tracker()
    run = tracker.run(tracker.start_run(category, tags={"kfp.run": pipeline_run} if pipeline_run else None))
    with run.failing():
        params = entry.train.with_overrides(overrides)
        run_preprocess(ctx.settings, ctx.store, entry, manifest_dir, params=params, run=run)
    return run.run_id
