"""Pipeline wall time: kfp.local (one subprocess per step) vs the same five steps called in-process.

    python benchmarks/pipeline.py [--category fashion-mnist]

Both run on fresh data homes (embedded Qdrant, SQLite MLflow, local store) with the category's
registry parameters; the ratio is the cost of running the steps as kfp components locally.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_result  # noqa: E402

from visearch.cli.pipeline import run_pipeline  # noqa: E402
from visearch.context import Context  # noqa: E402
from visearch.data.demo import ensure_demo_data  # noqa: E402
from visearch.loop import run_loop  # noqa: E402


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
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            # Alternating (in-process first, then kfp first): neither always runs on cold caches.
            order = ["direct", "kfp"] if round_ % 2 == 0 else ["kfp", "direct"]
            for runner in order:
                ctx = fresh_context(Path(folder) / f"{runner}-{round_}")
                started = time.perf_counter()
                if runner == "direct":
                    run_loop(ctx.settings, ctx.store, ctx.category(args.category), show_progress=False)
                else:
                    run_pipeline(ctx.settings, [args.category], log_file=Path(folder) / f"kfp-{round_}.log")
                seconds[runner].append(time.perf_counter() - started)
                print(runner, f"{seconds[runner][-1]:.1f} s", flush=True)
    direct, local = min(seconds["direct"]), min(seconds["kfp"])
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
        table(["runner", "best s", "every round s", "ratio (best)"], rows),
    )


if __name__ == "__main__":
    main()
