"""The living catalogue's speed, each figure against a baseline measured in the same run.

    python benchmarks/catalogue.py [--category fashion-mnist] [--adds 50] [--bulk 200] [--queries 300]

Needs an indexed category in VISEARCH_HOME (run `make demo` or `visearch pipeline run` first); it
works on a copy of that home made beside it (same disk), so the category itself is left as it was. Three tables:

1. add → searchable: one ``Catalogue.add`` (what ``POST /categories/{c}/images`` and ``visearch add``
   run: decode, embed with the live model, change record, index write) and the query that finds it,
   against one library query of the same image (the forward dominates both; goal: ≤ 2× the query).
2. bulk: ``bulk`` new images added one after another and as one batched write (``write_many``: what
   ``visearch sync`` runs), in images/s, against the embed step's own
   images/s on the same images (goal ≥ 0.8×) and against a full pipeline run's images/s when
   ``--pipeline-seconds`` gives one measured on the same machine (goal: taking ``bulk`` new images in
   ≥ 10× faster than a full pipeline run).
3. query p50/p99 with adds at 10 per second in a background thread, against the same queries with no
   writes (goal: p99 ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: real photos

import numpy as np  # noqa: E402
from common import table, write_result  # noqa: E402
from PIL import Image  # noqa: E402

from tests.helpers import photo  # noqa: E402
from visearch.catalogue.writes import Change  # noqa: E402
from visearch.categories import load_registry  # noqa: E402
from visearch.index import open_index  # noqa: E402
from visearch.live_writes import open_catalogue  # noqa: E402
from visearch.search import SearchEngine  # noqa: E402
from visearch.settings import Settings  # noqa: E402
from visearch.storage import make_store  # noqa: E402


def png(index: int, size: int = 64) -> bytes:
    """A distinct real image: a scikit-image photo, shifted and mirrored by ``index``."""
    image = photo(index % 8, size=size)
    if index // 8 % 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate((index // 16) * 7)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(samples, [50, 99]) * 1000
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--category", default="fashion-mnist")
    parser.add_argument("--adds", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=200)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pipeline-seconds", type=float, default=None, help="a full pipeline run on this category")
    args = parser.parse_args()

    original = Settings()
    # The copy sits beside the home, on its disk: a write creates files, and what that costs is the
    # home's disk's (on the machine of the committed results, creating a file in /tmp cost 0.5-0.7 ms
    # against 0.04-0.1 ms beside the home).
    with tempfile.TemporaryDirectory(prefix="visearch-catalogue-bench-", dir=original.home.parent) as folder:
        home = Path(folder) / "home"
        shutil.copytree(original.home, home, ignore=shutil.ignore_patterns("kfp", "work"))
        # Written back before measuring: the copy's dirty pages (~700 MB at 70,000 images) made every
        # file the writes create cost 0.5 ms instead of 0.1 until the kernel had written them.
        os.sync()
        settings = original.model_copy(update={"visearch_home": home})
        registry = load_registry(settings.visearch_categories)
        index = open_index(settings)
        engine = SearchEngine(settings, registry, make_store(settings), index)
        catalogue = open_catalogue(engine, args.category)
        cls = str(catalogue.rows()["class"].iloc[0])
        counter = iter(range(10**9))

        def add() -> str:
            number = next(counter)
            return catalogue.add(png(number), {"class": cls, "file": f"bench/{number:06d}.png"}).id

        def query(data: bytes) -> list[str]:
            return [hit.id for hit in engine.search(args.category, data, k=10).results]

        add()  # the model and the writer warm up
        query(png(0))
        adds, found, queries = [], [], []
        for _ in range(args.adds):
            data = png(next(counter) + 10_000)
            started = time.perf_counter()
            pid = catalogue.add(data, {"class": cls}).id
            added = time.perf_counter()
            hits = query(data)
            done = time.perf_counter()
            assert pid in hits, "an added image must be found by the next query"
            adds.append(added - started)
            found.append(done - started)
            started = time.perf_counter()
            query(data)
            queries.append(time.perf_counter() - started)
        q50, q99 = ms(queries)
        a50, a99 = ms(adds)
        f50, f99 = ms(found)
        first = table(
            ["what", "p50 ms", "p99 ms", "p50 / query"],
            [
                ["library query (baseline)", q50, q99, 1.0],
                ["add", a50, a99, a50 / q50],
                ["add + the query that finds it", f50, f99, f50 / q50],
            ],
        )

        started = time.perf_counter()
        for _ in range(args.bulk):
            add()
        bulk_rate = args.bulk / (time.perf_counter() - started)
        batch = [
            Change("add", png(i + 30_000), {"class": cls, "file": f"bench/batch-{i:06d}.png"}) for i in range(args.bulk)
        ]
        started = time.perf_counter()
        assert all(not isinstance(r, Exception) for r in catalogue.write_many(batch))
        batch_rate = args.bulk / (time.perf_counter() - started)
        datas = [png(i + 20_000) for i in range(args.bulk)]
        live = index.require_live(args.category)
        started = time.perf_counter()
        for lo in range(0, len(datas), 32):  # the embed step's batches, decoded as the step decodes them
            catalogue.embed(live, datas[lo : lo + 32])
        embed_rate = args.bulk / (time.perf_counter() - started)
        rows = [
            ["embed step's forward (baseline)", embed_rate, 1.0],
            ["adds one by one", bulk_rate, bulk_rate / embed_rate],
            ["batched adds (write_many, as sync)", batch_rate, batch_rate / embed_rate],
        ]
        if args.pipeline_seconds:
            total = len(catalogue.rows())
            rows.append(
                ["full pipeline run", total / args.pipeline_seconds, total / args.pipeline_seconds / embed_rate]
            )
        second = table(["what", "images/s", "vs embed"], rows)
        if args.pipeline_seconds:
            seconds = args.bulk / batch_rate
            second += (
                f"\n\nTo take {args.bulk} new images in: batched adds {seconds:.1f} s, a full pipeline run on the "
                f"same data {args.pipeline_seconds:.0f} s: **{args.pipeline_seconds / seconds:.0f}x** faster (goal ≥ 10x)."
            )

        probe = png(3)
        quiet = []
        for _ in range(args.queries):
            started = time.perf_counter()
            query(probe)
            quiet.append(time.perf_counter() - started)
        stop = threading.Event()
        written = []

        def writer() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                add()
                written.append(time.perf_counter() - started)
                stop.wait(max(0.0, 0.1 - (time.perf_counter() - started)))  # 10 per second

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        busy = []
        for _ in range(args.queries):
            started = time.perf_counter()
            query(probe)
            busy.append(time.perf_counter() - started)
        stop.set()
        thread.join()
        n50, n99 = ms(quiet)
        b50, b99 = ms(busy)
        third = table(
            ["queries", "p50 ms", "p99 ms", "p99 / quiet p99"],
            [["no writes (baseline)", n50, n99, 1.0], [f"{len(written)} adds meanwhile", b50, b99, b99 / n99]],
        )
        index.close()
    write_result(
        "catalogue",
        "Living catalogue: add → searchable, bulk adds, queries under writes",
        f"category {args.category}, {args.adds} timed adds, {args.bulk} bulk images, {args.queries} queries",
        "## add → searchable\n\n" + first + "\n\n## bulk\n\n" + second + "\n\n## queries under writes\n\n" + third,
    )


if __name__ == "__main__":
    main()
