"""Run the pipeline on this machine with ``kfp.local`` (SubprocessRunner) on the embedded engines.

Every step runs as a subprocess of the current Python with the current environment, so it uses
the same data home (``VISEARCH_HOME``), Qdrant local mode and SQLite MLflow as the CLI.
"""

import json
import logging
import os
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp import local

from pipelines.status import StatusLines
from pipelines.visearch_pipeline import build_pipeline
from visearch.settings import Settings

STEPS = ("preprocess", "train", "evaluate", "embed", "upsert")


@dataclass
class CategoryRun:
    """Where one category's artifacts landed, and what the gate and the index said."""

    category: str
    folder: Path
    artifacts: dict[str, Path] = field(default_factory=dict)
    reason: str = ""
    collection: str = ""
    run_id: str = ""
    mode: str = ""  # what the refresh step decided: "train" (the chain ran) or "refreshed"

    @property
    def report(self) -> dict[str, Any]:
        """The evaluation report (metrics of every model + the gate's decision)."""
        return json.loads((self.artifacts["evaluate/report"] / "report.json").read_text(encoding="utf-8"))


@dataclass
class LocalRun:
    """A kfp.local run folder and what each category's iteration left in it."""

    folder: Path
    categories: list[CategoryRun]

    def describe(self) -> str:
        """A short listing of where every artifact landed."""
        lines = [f"pipeline run folder: {self.folder}"]
        for category in self.categories:
            if category.mode == "refreshed":
                lines.append(f"\n{category.category}:  refreshed from its change log, not trained")
                continue
            lines.append(f"\n{category.category}:  MLflow run {category.run_id}  index {category.collection}")
            lines.append(f"  gate: {category.reason}")
            lines += [f"  {name:<22} {path}" for name, path in category.artifacts.items()]
        return "\n".join(lines)


def run_local(
    settings: Settings,
    categories: list[str],
    overrides: dict[str, Any] | None = None,
    *,
    log_file: Path | None = None,
    embed_shards: int | None = None,
    mode: str = "full",
) -> LocalRun:
    """Run the pipeline for ``categories``; artifacts land under ``<VISEARCH_HOME>/kfp``.

    Args:
        settings: The data home and engines; exported to the step subprocesses.
        categories: Category names (the ParallelFor items), processed one after another.
        overrides: Pipeline parameters (training params by their seed names).
        log_file: Write the steps' full logs there and show one status line per step and category
            (``pipelines.status.StatusLines``); None: kfp's whole log on stdout.
        embed_shards: Embed steps per category (the pipeline's ``embed_shards``); None = the registry's.
        mode: The pipeline's ``mode``: ``full``, ``refresh`` or ``auto`` (``visearch.stages.refresh.MODES``).
    """
    root = settings.home / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    # The step subprocesses inherit os.environ: pin the home so a relative VISEARCH_HOME cannot drift.
    os.environ["VISEARCH_HOME"] = str(settings.home)
    if settings.visearch_categories:
        os.environ["VISEARCH_CATEGORIES"] = str(Path(settings.visearch_categories).resolve())
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(settings.train_image, parallelism=1)
    width = max(map(len, categories), default=8)
    output = StatusLines(log_file, sys.stdout, width=width) if log_file else nullcontext()
    root_logger = logging.getLogger()
    level = root_logger.level
    with warnings.catch_warnings(), output:
        # base_image is only used on a cluster; locally the steps run in this environment.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # kfp's orchestrator logs each loop item's field selection at INFO between steps (on the
        # terminal, past the status lines); each step's own log still reaches the log file.
        root_logger.setLevel(logging.WARNING)
        shards = {} if embed_shards is None else {"embed_shards": embed_shards}
        try:
            pipeline(categories=categories, mode=mode, **(overrides or {}), **shards)
        finally:
            root_logger.setLevel(level)
    created = sorted((p for p in root.iterdir() if p not in before and p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not created:
        raise RuntimeError(f"kfp.local wrote no run folder under {root}")
    return collect(created[-1], categories)


def collect(folder: Path, categories: list[str]) -> LocalRun:
    """Find each category's artifacts in a kfp.local run folder (one ``for-loop-*-iteration-N`` each).

    A category's embed shards are ``embed[i]/embeddings`` (``embed/embeddings`` when there is one).
    """
    runs = []
    for number, category in enumerate(categories):
        matches = sorted(folder.glob(f"for-loop-*-iteration-{number}"))
        if not matches:
            continue
        iteration = matches[0]
        found = CategoryRun(category, iteration)
        # The embed step runs once per shard, each in a folder of the inner loop (for-loop-3-iteration-N).
        shards = sorted(iteration.glob("for-loop-*-iteration-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        found.mode = _parameters(iteration / "refresh", "refresh").get("mode", "")
        for step in STEPS:
            places = [(iteration / step, step)]
            places += [(shard / step, step if len(shards) == 1 else f"{step}[{i}]") for i, shard in enumerate(shards)]
            for step_dir, label in places:
                for output in sorted(step_dir.iterdir()) if step_dir.is_dir() else []:
                    if output.name != "executor_output.json":
                        found.artifacts[f"{label}/{output.name}"] = output
            for name, value in _parameters(iteration / step, step).items():
                setattr(found, name, value)
        runs.append(found)
    return LocalRun(folder, runs)


def _parameters(step_dir: Path, step: str) -> dict[str, str]:
    """The string outputs a step returned (run id, gate reason, collection)."""
    names = {"refresh": "mode", "preprocess": "run_id", "evaluate": "reason", "upsert": "collection"}
    path = step_dir / "executor_output.json"
    if step not in names or not path.exists():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("parameterValues", {})
    return {names[step]: values["Output"]} if "Output" in values else {}
