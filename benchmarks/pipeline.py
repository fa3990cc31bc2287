"""Pipeline wall time: kfp.local (one subprocess per step) vs the same five steps called in-process.

    python benchmarks/pipeline.py [--category fashion-mnist] [--rounds 2]

Both run on fresh data homes (embedded Qdrant, SQLite MLflow, local store) with the category's
registry parameters; the ratio is the cost of running the steps as kfp components locally.
Where it goes: each step's wall time in both runners (the kfp.local log's task start and end;
the library step functions timed in-process), and what importing the heavy libraries costs a
fresh Python process, as every kfp.local step is one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_result  # noqa: E402

import visearch.stages.in_process  # noqa: E402
from visearch.cli.pipeline import run_pipeline  # noqa: E402
from visearch.data.demo import ensure_demo_data  # noqa: E402
from visearch.entry_context import Context  # noqa: E402
from visearch.stages.in_process import run_in_process  # noqa: E402

# The library function behind each pipeline step, as run_in_process calls them (shards has none: run_in_process
# embeds in one piece).
STEP_FUNCTIONS = {
    "preprocess": "run_preprocess",
    "train": "train_candidates",
    "evaluate": "evaluate_stage",
    "embed": "run_embed",
    "upsert": "run_upsert",
}
# What a fresh process pays to import each heavy library (each measured alone, with what it imports).
IMPORTS = {
    "kfp's executor (every step)": "kfp.dsl.executor_main",
    "MLflow + its SQLite store (preprocess, train, evaluate, upsert)": "mlflow.store.tracking.sqlalchemy_store",
    "torch": "torch",
    "torch + torchvision (train, evaluate, embed)": "torchvision",
    "torch + pytorch-metric-learning (train, evaluate)": "pytorch_metric_learning.losses",
    "qdrant-client (upsert)": "qdrant_client",
    "pandas (every step but shards)": "pandas",
}
TASK_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - (?:Executing task|Task) .*?'(\w+)'")


def timed_steps(seconds: dict[str, float]) -> None:
    """Time the library step functions run_in_process calls, adding each call's wall time to ``seconds``."""

    def timer(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    for step, attribute in STEP_FUNCTIONS.items():
        setattr(visearch.stages.in_process, attribute, timer(step, getattr(visearch.stages.in_process, attribute)))


def kfp_step_seconds(log: Path) -> dict[str, float]:
    """Each task's wall time from a kfp.local log: its "Executing task" line to its "finished" line."""
    started: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = TASK_LINE.match(re.sub(r"\x1b\[[0-9;]*m", "", line).strip())
        if not match:
            continue
        stamp, task = datetime.strptime(match.group(1), "%H:%M:%S.%f"), match.group(2)
        if task not in started:
            started[task] = stamp
        elif "finished" in line:
            seconds[task] = seconds.get(task, 0.0) + (stamp - started.pop(task)).total_seconds()
    return seconds


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall time of a fresh interpreter importing ``module``, less a bare interpreter's start."""

    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    bare = statistics.median(run("pass") for _ in range(repeats))
    return statistics.median(run(f"import {module}") for _ in range(repeats)) - bare


def fresh_context(home: Path) -> Context:
    os.environ["VISEARCH_HOME"] = str(home)
    ctx = Context.from_env()
    ensure_demo_data(ctx.registry, ctx.store)
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="fashion-mnist")
    parser.add_argument("--rounds", type=int, default=2, help="each runner this often, alternating; the best counts")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"direct": [], "kfp": []}
    steps: dict[str, list[dict[str, float]]] = {"direct": [], "kfp": []}
    step_clock: dict[str, float] = {}  # the in-process run's step times, filled by the wrappers
    timed_steps(step_clock)
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            # Alternating (in-process first, then kfp first): neither always runs on cold caches.
            order = ["direct", "kfp"] if round_ % 2 == 0 else ["kfp", "direct"]
            for runner in order:
                ctx = fresh_context(Path(folder) / f"{runner}-{round_}")
                step_clock.clear()
                log = Path(folder) / f"kfp-{round_}.log"
                started = time.perf_counter()
                if runner == "direct":
                    run_in_process(ctx.settings, ctx.store, ctx.category(args.category), show_progress=False)
                else:
                    run_pipeline(ctx.settings, [args.category], log_file=log)
                seconds[runner].append(time.perf_counter() - started)
                steps[runner].append(dict(step_clock) if runner == "direct" else kfp_step_seconds(log))
                print(runner, f"{seconds[runner][-1]:.1f} s", steps[runner][-1], flush=True)
    direct, local = min(seconds["direct"]), min(seconds["kfp"])
    best = {runner: steps[runner][seconds[runner].index(min(seconds[runner]))] for runner in steps}
    step_rows = [
        [
            step,
            f"{best['direct'].get(step, 0.0):.1f}",
            f"{best['kfp'].get(step, 0.0):.1f}",
            f"{best['kfp'].get(step, 0.0) - best['direct'].get(step, 0.0):+.1f}",
        ]
        for step in ["preprocess", "train", "evaluate", "shards", "embed", "upsert"]
    ]
    totals = [sum(best[runner].values()) for runner in ("direct", "kfp")]
    step_rows.append(["all steps", f"{totals[0]:.1f}", f"{totals[1]:.1f}", f"{totals[1] - totals[0]:+.1f}"])
    import_rows = [[label, f"{import_seconds(module):.2f}"] for label, module in IMPORTS.items()]
    rows = [
        ["library calls in one process", f"{direct:.1f}", ", ".join(f"{s:.1f}" for s in seconds["direct"]), "1.00x"],
        [
            "kfp.local pipeline (a subprocess per step)",
            f"{local:.1f}",
            ", ".join(f"{s:.1f}" for s in seconds["kfp"]),
            f"{local / direct:.2f}x",
        ],
    ]
    write_result(
        "pipeline",
        "Pipeline wall time: kfp.local vs in-process",
        f"category {args.category}, registry parameters, fresh homes, {args.rounds} rounds alternating the order",
        table(["runner", "best s", "every round s", "ratio (best)"], rows)
        + "\n\nEach step's wall time in the best round of each runner (kfp.local: the task's start to end in"
        " its log, process start and imports included; in-process: the library step function):\n\n"
        + table(["step", "in-process s", "kfp.local s", "difference s"], step_rows)
        + "\n\nWhat importing a library costs a fresh Python process (median of 3, less a bare"
        " interpreter's start): every kfp.local step pays it again, the in-process run once:\n\n"
        + table(["import", "s"], import_rows),
    )


if __name__ == "__main__":
    main()
