"""Index: upsert throughput, query latency and recall@10 at several sizes, per engine.

    python benchmarks/index.py [--vectors synthetic|realistic] [--sizes 10000,100000] [--dim 128]
                               [--queries 200] [--modes embedded,local] [--ef N] [--batch-size N]

Modes: ``embedded`` is visearch's default through its own adapter (qdrant-edge, HNSW); ``local`` is
qdrant-client's pure-Python local mode (the previous default), ``memory`` its ``:memory:`` mode,
``server`` a Qdrant server (set QDRANT_URL). Baseline in the same run: exact brute-force search
with numpy (the recall reference and latency floor).

``--vectors synthetic``: isotropic clusters, L2-normalised; 100 clusters with wide noise make
neighbours hard to tell apart, so recall there is a pessimistic figure (results: index.md,
index-1m.md). ``--vectors realistic``: the demo model's embeddings of all 70,000 Fashion-MNIST
images plus perturbed copies past 70,000 (see ``realistic.py``; dim is the model's, 128), queries
are held-out real embeddings (results: index-realistic.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import table, write_result  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from visearch.index import UPSERT_BATCH  # noqa: E402


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 100) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.6, size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def client_for(mode: str, folder: str) -> QdrantClient:
    if mode == "local":
        return QdrantClient(path=folder)
    if mode == "memory":
        return QdrantClient(":memory:")
    return QdrantClient(url=os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"))


def run_embedded(
    folder: str, ids: list[str], data: np.ndarray, queries: np.ndarray, *, ef: int | None, batch_size: int
) -> tuple[float, float, float, list[float], list[set[int]]]:
    """visearch's embedded engine through its own adapter (qdrant-edge: HNSW, one shard per version).

    The upsert rate includes sealing the version (building the HNSW graph), as the pipeline does;
    then the seconds the seal took and the CPU seconds of upsert + seal.
    """
    from visearch.index import open_index
    from visearch.settings import Settings

    overrides = {"qdrant_hnsw_ef": ef} if ef else {}
    settings = Settings(visearch_home=Path(folder), qdrant_url=None, qdrant_host=None, _env_file=None, **overrides)
    index = open_index(settings)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    version = index.create("bench", "model", "data", data.shape[1])
    index.upsert(version.name, ids, data, [{"class": "c"}] * len(ids), batch_size=batch_size)
    upserted = time.perf_counter()
    index.seal(version.name)
    sealed = time.perf_counter()
    rate, cpu = len(ids) / (sealed - started), cpu_seconds() - cpu_started
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        hits = index.query(version.name, query.tolist(), k=10)
        latencies.append(time.perf_counter() - started)
        found.append({uuid.UUID(h.id).int for h in hits})
    index.close()
    return rate, sealed - upserted, cpu, latencies, found


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work, whatever the machine's load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", choices=("synthetic", "realistic"), default="synthetic")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--modes",
        default="embedded,local",
        help="embedded (visearch default, qdrant-edge), "
        "local (qdrant-client local mode), memory, server (needs QDRANT_URL)",
    )
    parser.add_argument("--ef", type=int, default=None, help="query-time HNSW ef; unset = visearch's default")
    parser.add_argument("--batch-size", type=int, default=UPSERT_BATCH, help="upsert batch (the upsert step's default)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # local mode warns past 20k points
    rng = np.random.default_rng(0)
    rows = []
    descriptions: dict[str, None] = {}  # ordered, no repeats
    for size in map(int, args.sizes.split(",")):
        if args.vectors == "realistic":
            from realistic import realistic

            data, queries, described = realistic(size, args.queries, rng)
        else:
            data, queries = clustered(size, args.dim, rng), clustered(args.queries, args.dim, rng)
            described = "clustered synthetic vectors"
        descriptions[f"{size:,} points: {described}" if args.vectors == "realistic" else described] = None
        started = time.perf_counter()
        exact = []
        for query in queries:
            exact.append(np.argpartition(-(data @ query), 10)[:10])
        numpy_ms = (time.perf_counter() - started) / len(queries) * 1000
        ids = [str(uuid.UUID(int=i)) for i in range(size)]
        for mode in args.modes.split(","):
            if mode == "embedded":
                with tempfile.TemporaryDirectory() as folder:
                    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                    upsert_rate, seal_s, cpu_s, latencies, found_ids = run_embedded(
                        folder, ids, data, queries, ef=args.ef, batch_size=args.batch_size
                    )
                    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
                recalls = [len(found & set(truth.tolist())) / 10 for found, truth in zip(found_ids, exact, strict=True)]
                p50 = percentile_ms(latencies, 50)
                rows.append(
                    [
                        size,
                        mode,
                        f"{upsert_rate:,.0f}",
                        f"{seal_s:.0f}",
                        f"{size / cpu_s:,.0f}",
                        f"{p50:.2f}",
                        f"{percentile_ms(latencies, 99):.2f}",
                        f"{np.mean(recalls):.3f}",
                        f"{numpy_ms:.2f}",
                        f"{p50 / numpy_ms:.3f}x",
                        f"{max(rss_mb, 0):.0f}",
                    ]
                )
                print(rows[-1], flush=True)
                continue
            with tempfile.TemporaryDirectory() as folder:
                client = client_for(mode, folder)
                name = "bench"
                if client.collection_exists(name):
                    client.delete_collection(name)
                client.create_collection(
                    name, vectors_config=models.VectorParams(size=args.dim, distance=models.Distance.COSINE)
                )
                rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                started = time.perf_counter()
                client.upload_points(
                    name,
                    (models.PointStruct(id=pid, vector=v.tolist()) for pid, v in zip(ids, data, strict=True)),
                    batch_size=args.batch_size,
                    wait=True,
                )
                upsert_rate = size / (time.perf_counter() - started)
                latencies, recalls = [], []
                for query, truth in zip(queries, exact, strict=True):
                    started = time.perf_counter()
                    hits = client.query_points(name, query=query.tolist(), limit=10).points
                    latencies.append(time.perf_counter() - started)
                    found = {uuid.UUID(str(h.id)).int for h in hits}
                    recalls.append(len(found & set(truth.tolist())) / 10)
                rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
                client.close()
            p50 = percentile_ms(latencies, 50)
            rows.append(
                [
                    size,
                    mode,
                    f"{upsert_rate:,.0f}",
                    "-",
                    "-",
                    f"{p50:.1f}",
                    f"{percentile_ms(latencies, 99):.1f}",
                    f"{np.mean(recalls):.3f}",
                    f"{numpy_ms:.2f}",
                    f"{p50 / numpy_ms:.1f}x",
                    f"{max(rss_mb, 0):.0f}",
                ]
            )
            print(rows[-1], flush=True)
    sizes = [int(size) for size in args.sizes.split(",")]
    name = "index-1m" if max(sizes) >= 1_000_000 else "index"  # the large synthetic run keeps its own file
    name = "index-realistic" if args.vectors == "realistic" else name
    from visearch.settings import Settings

    ef = args.ef or Settings.model_fields["qdrant_hnsw_ef"].default
    write_result(
        name,
        "Qdrant index: upsert, query latency, recall@10",
        f"dim {data.shape[1]}, cosine, {args.queries} queries, {'; '.join(descriptions)}; embedded: query ef {ef}, "
        f"upsert batch {args.batch_size}; baseline = exact numpy search in the same run",
        table(
            [
                "points",
                "mode",
                "upsert pts/s (incl. HNSW build)",
                "of which build s",
                "points per CPU-second",
                "query p50 ms",
                "query p99 ms",
                "recall@10",
                "numpy exact ms",
                "p50 / numpy",
                "peak RSS growth MB",
            ],
            rows,
        ),
    )


if __name__ == "__main__":
    main()
