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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ctx = fresh_context(Path(folder) / "direct")
        started = time.perf_counter()
        run_loop(ctx.settings, ctx.store, ctx.category(args.category), show_progress=False)
        direct = time.perf_counter() - started

        ctx = fresh_context(Path(folder) / "kfp")
        started = time.perf_counter()
        run_pipeline(ctx.settings, [args.category], log_file=Path(folder) / "kfp.log")
        local = time.perf_counter() - started
    rows = [
        ["library calls in one process", f"{direct:.1f}", "1.00x"],
        ["kfp.local pipeline (a subprocess per step)", f"{local:.1f}", f"{local / direct:.2f}x"],
    ]
    write_result(
        "pipeline",
        "Pipeline wall time: kfp.local vs in-process",
        f"category {args.category}, registry parameters, fresh homes",
        table(["runner", "seconds", "ratio"], rows),
    )


if __name__ == "__main__":
    main()
