"""Resident memory of the service: idle, after a category's first query, after 50 more (issue 30, "Memory").

    python benchmarks/memory.py [--demo-home /work/load-home] [--full-home /work/bench-home]
                                [--big-home /work/mem-1m-home] [--points 1000000] [--queries 50]

Three homes, each served by ``visearch serve`` (BentoML) on a free loopback port: the demo
category ``fashion-mnist`` (``--demo-home``), the 70,000-image ``fashion-mnist-full``
(``--full-home``), and ``--big-home``: a copy of ``--full-home`` whose live ``fashion-mnist-full``
version holds ``--points`` points, built here once through the library's index API (the 70,000
real points' vectors and payloads, plus perturbed copies of them by benchmarks/realistic.py's
method, each with its source's payload under a new file name and id) and kept: a later run
re-measures it without rebuilding. The demo and 70,000 homes are served from temporary copies
(the service writes caches and locks into its home).

Per home: the RSS of the server's process tree (load.py's ``rss_mb``) once /readyz answers
(models and indexes load lazily, per category, on its first query), after one POST /search
(multipart PNG) on the category, and after ``--queries`` more; plus the file-backed part of the
last (memory-mapped index and library pages, which the kernel can drop and re-read) and the
live version's size on disk. In a fresh process of this script, the same service path
(``SearchEngine``) splits the first query's cost: the model's ONNX session, then the index handle
with one query. Finally the idle RSS of the demo home with ``SERVE_WORKERS=2``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: photos

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from common import table, write_result  # noqa: E402
from latency import free_port  # noqa: E402
from load import rss_mb, start  # noqa: E402
from realistic import nearest_neighbour_distance  # noqa: E402

from tests.helpers import photo  # noqa: E402
from visearch.categories import load_registry  # noqa: E402
from visearch.cli.serve import wait_ready  # noqa: E402
from visearch.index import open_index, point_id  # noqa: E402
from visearch.neighbours import pairs_key, stats_key  # noqa: E402
from visearch.settings import Settings  # noqa: E402

DEMO, FULL = "fashion-mnist", "fashion-mnist-full"
BUILD_FILE = "memory-build.json"  # in the big home: how its version was built, for re-measurements
CHUNK = 100_000  # points per index.upsert call: payload dicts of a million points at once held GBs


NOTES = """## Notes

- Idle: the BentoML supervisor and one worker, no category loaded. RSS counts the resident pages of
  mapped files (shared libraries, the engine's memory-mapped files) in every process that maps them
  ("of which file-backed"); the kernel can share and reclaim those, not the rest.
- First query of a category: its model (the ONNX session of the live version, then its first
  forward), its neighbour statistics (``index/<version>/neighbours.json`` and ``duplicates.npz``
  from the store: the nearest-neighbour percentiles, and every near-duplicate pair above the
  category's ``duplicate_threshold`` held as arrays, 16 bytes a pair and each id once), and the index version's shard: its dense and semantic caption vectors
  (``InRamMmap``), the HNSW graphs, the BM25 sparse index (``ImmutableRam``), the payload indexes and
  the payloads (``payload_memory`` ``Cached``). The split table measures those three parts in order in
  one fresh process; its sum differs from the service's delta by what the worker had already loaded.
- The near-duplicate pairs grow with the points and with how tight the model's embedding is: the
  70,000-image category's 0.97 threshold keeps 7.4 pairs per point, the 1,000,000-point version 6.3.
- The seconds in the split table say where the first query's wait goes.
- After the first query the service stays flat: the queries that follow load nothing more.
"""


def settings_for(home: Path) -> Settings:
    return Settings(visearch_home=home)


def copy_home(source: Path, target: Path) -> None:
    """``cp -a`` then ``sync``: the source home is never served (nor written) in place."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    os.sync()


def du_mb(folder: Path) -> float:
    """Disk use of a folder like ``du`` (allocated blocks: sparse files count what they hold)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) / 1e6


def live_version(home: Path, category: str) -> tuple[str, int, float]:
    """Name, point count and size on disk (MB) of the category's live index version."""
    index = open_index(settings_for(home))
    try:
        live = index.require_live(category).name
        count = index.count(live)
    finally:
        index.close()
    return live, count, du_mb(home / "index" / "collections" / live)


# --- building the big version ------------------------------------------------------------------
def real_points(index: Any, collection: str) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Every point of ``collection``: ids, vectors (float32), payloads."""
    ids: list[str] = []
    payloads: list[dict[str, Any]] = []
    rows: list[list[float]] = []
    while page := index.page(collection, len(ids), 1024):
        vectors = index.vectors(collection, [r.id for r in page])
        ids += [r.id for r in page]
        payloads += [r.payload for r in page]
        rows += [vectors[r.id] for r in page]
    return ids, np.asarray(rows, dtype=np.float32), payloads


def build_big(source: Path, home: Path, points: int, *, noise: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """A copy of ``source`` whose live FULL version holds ``points`` points (see the module docstring)."""
    from visearch.index.versions import has_semantic, schema_hash
    from visearch.neighbours import ensure_stats
    from visearch.storage import make_store

    partial = home.with_name(home.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    copy_home(source, partial)
    settings = settings_for(partial)
    category = load_registry(settings.visearch_categories).get(FULL)
    index = open_index(settings)
    timings: dict[str, float] = {}
    try:
        live = index.require_live(FULL)
        started = time.perf_counter()
        ids, base, payloads = real_points(index, live.name)
        timings["read real points s"] = time.perf_counter() - started
        rng = np.random.default_rng(seed)
        nn = nearest_neighbour_distance(base, rng)
        sigma = noise * nn / np.sqrt(base.shape[1])  # realistic.py: E|noise| = noise x median NN distance
        # Row i < len(base) is real point i; past it, a copy of a random real one. Shuffled, so the
        # copies do not arrive in one block after the originals (as in realistic.py).
        sources = np.concatenate([np.arange(len(base)), rng.integers(0, len(base), points - len(base))])
        order = rng.permutation(points)
        semantic = has_semantic(live, category.fields, category.captions, category.meaning)
        if live.schema != schema_hash(category.fields, category.captions, meaning=category.meaning):
            print(f"warning: {live.name} lags the registry's schema; the new version keeps its schema", flush=True)
        version = index.create(
            FULL, live.model_version, f"n{points}", base.shape[1], category.fields, live.schema, semantic=semantic
        )
        all_ids: list[str] = []
        started = time.perf_counter()
        for lo in range(0, points, CHUNK):
            rows = order[lo : lo + CHUNK]
            vectors = base[sources[rows]]
            copy = rows >= len(base)
            moved = vectors[copy] + rng.normal(scale=sigma, size=(int(copy.sum()), base.shape[1]))
            vectors[copy] = moved / np.linalg.norm(moved, axis=1, keepdims=True)
            chunk_ids: list[str] = []
            chunk_payloads = []
            for row in rows.tolist():
                payload = payloads[sources[row]]
                if row < len(base):
                    chunk_ids.append(ids[row])
                    chunk_payloads.append(payload)
                else:
                    file = f"copy{row:07d}-{payload['file']}"
                    chunk_ids.append(point_id(FULL, file))
                    chunk_payloads.append({**payload, "file": file})
            index.upsert(
                version.name,
                chunk_ids,
                vectors,
                chunk_payloads,
                captions=category.captions,
                semantic=semantic,
                meaning=category.meaning,
            )
            all_ids += chunk_ids
            print(f"upserted {lo + len(rows):,} / {points:,} points", flush=True)
        timings["upsert s"] = time.perf_counter() - started
        count = index.count(version.name)
        if count != points:
            raise RuntimeError(f"{version.name} holds {count:,} points, expected {points:,}")
        started = time.perf_counter()
        index.seal(version.name)  # the HNSW graphs
        timings["seal (HNSW) s"] = time.perf_counter() - started
        # What the upsert stage measures before the swap, and the service reads on a category's first query.
        started = time.perf_counter()
        stats = ensure_stats(index, make_store(settings), version.name, all_ids, threshold=category.duplicate_threshold)
        timings["neighbour stats s"] = time.perf_counter() - started
        index.swap_alias(FULL, version.name)
    finally:
        index.close()
    built = {
        "collection": version.name,
        "points": points,
        "real": len(base),
        "noise": f"{noise} x median NN distance {nn:.3f}",
        "semantic": semantic,
        "duplicate pairs": len(stats.duplicates),
        **{k: round(v, 1) for k, v in timings.items()},
    }
    (partial / BUILD_FILE).write_text(json.dumps(built, indent=1), encoding="utf-8")
    os.sync()
    partial.rename(home)
    return built


def ensure_big(source: Path, home: Path, points: int) -> dict[str, Any]:
    """The big home's build record; built first unless its live version already holds ``points`` points."""
    if (home / BUILD_FILE).is_file() and live_version(home, FULL)[1] == points:
        print(f"{home}: live {FULL} holds {points:,} points; not rebuilt", flush=True)
        return dict(json.loads((home / BUILD_FILE).read_text(encoding="utf-8")))
    if home.exists():
        raise SystemExit(f"{home} exists without a live {FULL} version of {points:,} points; remove it first")
    print(f"building {home}: {FULL} with {points:,} points", flush=True)
    return build_big(source, home, points)


# --- measuring ---------------------------------------------------------------------------------
def file_backed_mb(process: subprocess.Popen[bytes]) -> float:
    """The file-backed resident part of the process tree (mapped files: index, libraries), MB."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().shared for p in [root, *root.children(recursive=True)]) / 1e6


def png(index: int) -> bytes:
    buffer = io.BytesIO()
    photo(index, size=64).save(buffer, format="PNG")
    return buffer.getvalue()


def settle(process: subprocess.Popen[bytes], seconds: float = 2.0) -> float:
    """RSS once background start-up work is done (the higher of two readings ``seconds`` apart)."""
    time.sleep(seconds)
    first = rss_mb(process)
    time.sleep(seconds)
    return max(first, rss_mb(process))


def measure(home: Path, category: str, queries: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """RSS (MB) of the service on ``home``: idle, after the first query of ``category``, after ``queries`` more."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(settings_for(home), port, None, env or {})
    try:
        if not wait_ready(url, process, timeout=300):
            raise RuntimeError(f"the service on {home} did not become ready")
        figures = {"idle": settle(process)}
        if not queries:
            return figures
        with httpx.Client(timeout=300) as client:

            def query(number: int) -> None:
                response = client.post(
                    f"{url}/search",
                    files={"image": ("query.png", png(number), "image/png")},
                    data={"category": category, "k": "10"},
                )
                response.raise_for_status()
                assert response.json()["results"], response.text

            started = time.perf_counter()
            query(0)
            figures["first query s"] = time.perf_counter() - started
            figures["first"] = settle(process)
            for number in range(1, queries + 1):
                query(number)
        figures["steady"] = settle(process)
        figures["file-backed"] = file_backed_mb(process)
        return figures
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def breakdown(home: Path, category: str) -> dict[str, float]:
    """In a fresh process of this script: RSS growth (MB) of the model, the neighbour statistics, the index + one query."""
    output = subprocess.run(
        [sys.executable, __file__, "--breakdown", str(home), category], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def breakdown_here(home: Path, category: str) -> None:
    """``breakdown``'s child: the service's query path (``SearchEngine``) without HTTP, RSS after each part."""
    from visearch.search import SearchEngine
    from visearch.storage import make_store

    settings = settings_for(home)
    engine = SearchEngine(
        settings, load_registry(settings.visearch_categories), make_store(settings), open_index(settings)
    )
    me = psutil.Process()
    image = png(0)
    engine.decode(image)  # the image stack imported and used once before the first reading
    before = me.memory_info().rss / 1e6
    live = engine.live_version(category)
    clock = time.perf_counter()
    engine.embed_images(category, [engine.decode(image)], live)  # the model's session and its first forward
    model, model_s = me.memory_info().rss / 1e6, time.perf_counter() - clock
    clock = time.perf_counter()
    stats = engine.stats(live)
    read, stats_s = me.memory_info().rss / 1e6, time.perf_counter() - clock
    clock = time.perf_counter()
    engine.search(category, image)
    searched, index_s = me.memory_info().rss / 1e6, time.perf_counter() - clock
    pairs = len(stats.duplicates) if stats else 0
    figures = {"model": model - before, "stats": read - model, "pairs": pairs, "index": searched - read}
    print(json.dumps({**figures, "model s": model_s, "stats s": stats_s, "index s": index_s}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-home", type=Path, default=Path("/work/load-home"))
    parser.add_argument("--full-home", type=Path, default=Path("/work/bench-home"))
    parser.add_argument("--big-home", type=Path, default=Path("/work/mem-1m-home"))
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--no-workers2", action="store_true", help="skip the SERVE_WORKERS=2 idle reading")
    parser.add_argument("--breakdown", nargs=2, metavar=("HOME", "CATEGORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.breakdown:
        breakdown_here(Path(args.breakdown[0]), args.breakdown[1])
        return
    built = ensure_big(args.full_home, args.big_home, args.points)
    rows, split = [], []
    with tempfile.TemporaryDirectory(prefix="visearch-memory-", dir=args.big_home.parent) as scratch:
        homes = []
        for name, source in (("demo", args.demo_home), ("full", args.full_home)):
            copy_home(source, Path(scratch) / name)
            homes.append(Path(scratch) / name)
        homes.append(args.big_home)
        for home, category in zip(homes, (DEMO, FULL, FULL), strict=True):
            live, points, disk = live_version(home, category)
            # The statistics as stored in the home's local object store: the JSON, and the pairs beside it.
            stored = [home / "objects" / key(live) for key in (stats_key, pairs_key)]
            print(f"measuring {category} ({points:,} points) on {home}", flush=True)
            figures = measure(home, category, args.queries)
            rows.append(
                [
                    category,
                    f"{points:,}",
                    f"{disk:.0f}",
                    f"{figures['idle']:.0f}",
                    f"{figures['first']:.0f}",
                    f"{figures['first'] - figures['idle']:.0f}",
                    f"{figures['steady']:.0f}",
                    f"{figures['file-backed']:.0f}",
                    f"{figures['first query s']:.1f}",
                ]
            )
            parts = breakdown(home, category)
            split.append(
                [
                    category,
                    f"{points:,}",
                    f"{parts['model']:.0f} ({parts['model s']:.1f} s)",
                    f"{parts['stats']:.0f} ({parts['stats s']:.1f} s)",
                    f"{int(parts['pairs']):,}",
                    f"{sum(path.stat().st_size for path in stored if path.is_file()) / 1e6:.1f}",
                    f"{parts['index']:.0f} ({parts['index s']:.1f} s)",
                ]
            )
            print(rows[-1], split[-1], flush=True)
        workers2 = None if args.no_workers2 else measure(homes[0], DEMO, 0, {"SERVE_WORKERS": "2"})["idle"]
    body = table(
        [
            "category",
            "points",
            "index on disk MB",
            "RSS idle MB",
            "RSS after first query MB",
            "delta MB",
            f"RSS after {args.queries} more MB",
            "of which file-backed MB",
            "first query s",
        ],
        rows,
    )
    body += "\n\nThe first query's cost split, in a fresh process on the same path (`SearchEngine`, no HTTP):\n\n"
    body += table(
        [
            "category",
            "points",
            "model load + one forward MB (s)",
            "neighbour stats MB (s)",
            "near-duplicate pairs in them",
            "stored stats MB (neighbours.json + duplicates.npz)",
            "index open + one query MB (s)",
        ],
        split,
    )
    if workers2 is not None:
        body += (
            f"\n\nWorkers: with `SERVE_WORKERS=2` the idle service (demo home) holds {workers2:.0f} MB against "
            f"{float(rows[0][3]):.0f} MB with one: each extra worker costs about {workers2 - float(rows[0][3]):.0f} "
            "MB idle, and loads its own models and indexes on its own first queries."
        )
    body += f"\n\nThe {args.points:,}-point version: " + ", ".join(f"{k} {v}" for k, v in built.items()) + "."
    body += "\n\n" + NOTES
    parameters = (
        f"homes {args.demo_home} (demo), {args.full_home} (70,000) served from copies, {args.big_home} "
        f"({args.points:,} points); one POST /search (multipart 64 px PNG, k=10), then {args.queries} more; "
        "RSS = the server's process tree (BentoML supervisor + worker), read 2 s and 4 s after each step, the higher"
    )
    write_result("memory", "Resident memory of the service per category", parameters, body)


if __name__ == "__main__":
    main()
