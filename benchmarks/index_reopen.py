"""First queries after a process opens an index version: cold pages vs QDRANT_WARM_ON_OPEN.

    python benchmarks/index_reopen.py [--points 1000000] [--queries 200]

Builds one embedded version of realistic vectors (``realistic.py``), then, per mode, a fresh
process opens it and runs the same queries twice (pass 1 = what the first users see, pass 2 =
warm). Before each mode the kernel's page cache is dropped when this runs as root (what a
restart or memory reclaim leaves); without root the modes share whatever is cached. Modes:
``off`` (the engine alone) and ``on`` (visearch reads the version's files once when it opens it).
Results: benchmarks/results/index-reopen.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import table, write_result  # noqa: E402

from visearch.index import open_index  # noqa: E402
from visearch.settings import Settings  # noqa: E402


def settings(home: Path, warm: bool) -> Settings:
    return Settings(visearch_home=home, qdrant_url=None, qdrant_host=None, _env_file=None, qdrant_warm_on_open=warm)


def build(home: Path, points: int, queries: int) -> tuple[str, float]:
    from realistic import realistic

    data, query_vectors, _ = realistic(points, queries, np.random.default_rng(0))
    np.save(home / "queries.npy", query_vectors)
    index = open_index(settings(home, False))
    started = time.perf_counter()
    version = index.create("bench", "model", "data", data.shape[1])
    index.upsert(version.name, [str(uuid.UUID(int=i)) for i in range(points)], data, [{"class": "c"}] * points)
    index.seal(version.name)
    index.close()
    return version.name, time.perf_counter() - started


def probe(home: Path, name: str, warm: bool) -> dict[str, object]:
    """In this (fresh) process: open the version, then two passes over the queries."""
    index = open_index(settings(home, warm))
    queries = np.load(home / "queries.npy")
    started = time.perf_counter()
    index.count(name)  # opens the version (and warms it when on)
    result: dict[str, object] = {"open_ms": (time.perf_counter() - started) * 1000}
    for label in ("pass1", "pass2"):
        latencies = []
        for query in queries:
            started = time.perf_counter()
            index.query(name, query.tolist(), k=10)
            latencies.append((time.perf_counter() - started) * 1000)
        result[label] = [float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))]
    index.close()
    return result


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--probe", nargs=3, metavar=("HOME", "NAME", "WARM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        home, name, warm = args.probe
        print(json.dumps(probe(Path(home), name, warm == "on")))
        return
    with tempfile.TemporaryDirectory(prefix="visearch-reopen-") as folder:
        home = Path(folder)
        name, seconds = build(home, args.points, args.queries)
        print(f"built {args.points:,} points in {seconds:.0f} s", flush=True)
        rows, dropped = [], []
        for mode in ("off", "on"):
            dropped.append(drop_caches())
            out = subprocess.run(
                [sys.executable, __file__, "--probe", str(home), name, mode], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([mode, f"{result['open_ms']:.0f}", *(f"{v:.2f}" for v in result["pass1"] + result["pass2"])])
            print(rows[-1], flush=True)
        cold = float(rows[0][2]), float(rows[0][3])
        for row in rows:
            row += [f"{float(row[2]) / cold[0]:.2f}x / {float(row[3]) / cold[1]:.2f}x"]
    write_result(
        "index-reopen",
        "First queries after opening an index version: cold vs warmed (QDRANT_WARM_ON_OPEN)",
        f"{args.points:,} realistic points (benchmarks/realistic.py), {args.queries} queries, k=10, embedded engine "
        f"defaults; each mode a fresh process; page cache dropped before each mode: {all(dropped)}",
        table(
            [
                "QDRANT_WARM_ON_OPEN",
                "open ms",
                "pass 1 p50 ms",
                "pass 1 p99 ms",
                "pass 2 p50 ms",
                "pass 2 p99 ms",
                "pass 1 vs off (p50 / p99)",
            ],
            rows,
        ),
    )


if __name__ == "__main__":
    main()
