"""Tune the embedded engine (qdrant-edge) on realistic vectors: HNSW, quantization, segments, batch size.

    python benchmarks/index_tuning.py --size 100000 --configs "m16-ef100,m32-ef256" --efs 64,128,256

Each configuration builds one shard the way visearch's adapter does (``EdgeBackend``: no WAL,
batches flushed one by one, ``optimize()`` builds the HNSW graph), in a fresh process so its
peak memory is its own, then answers the same queries at every query-time ``ef``. Recall@10
is against exact numpy search over the same vectors. Configuration names are ``-``-separated
tokens: ``m<M>``, ``ef<EF_CONSTRUCT>``, ``fst<FULL_SCAN_THRESHOLD_KB>``, ``int8`` (scalar
quantization, queries rescored with the original vectors), ``seg<N>`` (default_segment_number),
``max<KB>`` (max_segment_size), ``idx<KB>`` (indexing_threshold), ``b<BATCH>`` (upsert batch).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import table, write_result  # noqa: E402


def parse(name: str) -> dict[str, Any]:
    """Configuration tokens -> settings (defaults: visearch's adapter before this tuning)."""
    config: dict[str, Any] = {"m": 32, "ef_construct": 256, "fst": 10_000, "int8": False, "batch": 256}
    prefixes = {"m": "m", "ef": "ef_construct", "fst": "fst", "seg": "seg", "max": "max", "idx": "idx", "b": "batch"}
    for token in name.split("-"):
        if token == "int8":
            config["int8"] = True
            continue
        key = next(
            p for p in sorted(prefixes, key=len, reverse=True) if token.startswith(p) and token[len(p) :].isdigit()
        )
        config[prefixes[key]] = int(token[len(key) :])
    return config


def build_and_query(data_file: str, query_file: str, config: dict[str, Any], efs: list[int]) -> dict[str, Any]:
    """In a fresh process: build a shard with ``config``, then query it at each ef."""
    import qdrant_edge as edge

    data = np.load(data_file)
    queries = np.load(query_file)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids = [str(uuid.UUID(int=i)) for i in range(len(data))]
    optimizers = None
    if any(k in config for k in ("seg", "max", "idx")):
        optimizers = edge.EdgeOptimizersConfig(
            default_segment_number=config.get("seg"),
            max_segment_size=config.get("max"),
            indexing_threshold=config.get("idx"),
        )
    quantization = edge.ScalarQuantizationConfig(edge.ScalarType.Int8, quantile=0.99) if config["int8"] else None
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        shard = edge.EdgeShard.create(
            folder,
            edge.EdgeConfig(
                vectors={"": edge.EdgeVectorParams(size=data.shape[1], distance=edge.Distance.Cosine)},
                hnsw_config=edge.HnswIndexConfig(
                    m=config["m"], ef_construct=config["ef_construct"], full_scan_threshold=config["fst"]
                ),
                quantization_config=quantization,
                optimizers=optimizers,
                wal_enabled=False,
            ),
        )
        shard.update(edge.UpdateOperation.create_field_index("class", edge.PayloadSchemaType.Keyword))
        batch = config["batch"]
        for lo in range(0, len(ids), batch):
            points = [
                edge.Point(id=pid, vector={"": vector.tolist()}, payload={"class": "c"})
                for pid, vector in zip(ids[lo : lo + batch], data[lo : lo + batch], strict=True)
            ]
            shard.update(edge.UpdateOperation.upsert_points(points))
            shard.flush()
        upserted = time.perf_counter()
        shard.optimize()
        shard.flush()
        sealed = time.perf_counter()
        segments = shard.info().segments_count
        results: dict[int, tuple[list[float], list[set[int]]]] = {}
        quantization_params = edge.QuantizationSearchParams(rescore=True) if config["int8"] else None
        for ef in efs:
            params = edge.SearchParams(hnsw_ef=ef, quantization=quantization_params)
            latencies, found = [], []
            for query in queries:
                request = edge.QueryRequest(
                    query=edge.Query.Nearest(list(map(float, query)), using=""),
                    limit=10,
                    with_payload=True,
                    params=params,
                )
                t0 = time.perf_counter()
                hits = shard.query(request)
                latencies.append(time.perf_counter() - t0)
                found.append({uuid.UUID(str(h.id)).int for h in hits})
            results[ef] = (latencies, found)
        shard.close()
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {
        "upsert_s": upserted - started,
        "seal_s": sealed - upserted,
        "results": results,
        "rss_mb": rss_mb,
        "segments": segments,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--configs", default="m32-ef256,m16-ef100")
    parser.add_argument("--efs", default="64,128,256")
    parser.add_argument("--name", default="index-realistic-tuning")
    args = parser.parse_args()
    from realistic import realistic

    rng = np.random.default_rng(0)
    data, queries, described = realistic(args.size, args.queries, rng)
    started = time.perf_counter()
    exact = [set(np.argpartition(-(data @ q), 10)[:10].tolist()) for q in queries]
    numpy_ms = (time.perf_counter() - started) / len(queries) * 1000
    efs = [int(e) for e in args.efs.split(",")]
    rows = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        data_file, query_file = f"{folder}/data.npy", f"{folder}/queries.npy"
        np.save(data_file, data)
        np.save(query_file, queries)
        del data
        for name in args.configs.split(","):
            with context.Pool(1) as pool:
                out = pool.apply(build_and_query, (data_file, query_file, parse(name), efs))
            build_rate = args.size / (out["upsert_s"] + out["seal_s"])
            for ef, (latencies, found) in out["results"].items():
                recall = np.mean([len(f & t) / 10 for f, t in zip(found, exact, strict=True)])
                p50, p99 = (float(np.percentile(latencies, q) * 1000) for q in (50, 99))
                rows.append(
                    [
                        f"{args.size:,}",
                        name,
                        out["segments"],
                        ef,
                        f"{out['upsert_s']:.0f} + {out['seal_s']:.0f}",
                        f"{build_rate:,.0f}",
                        f"{p50:.2f}",
                        f"{p99:.2f}",
                        f"{recall:.3f}",
                        f"{p50 / numpy_ms:.3f}x",
                        f"{out['rss_mb']:.0f}",
                    ]
                )
                print(rows[-1], flush=True)
    write_result(
        args.name,
        "Embedded engine tuning on realistic vectors (qdrant-edge, recall@10 vs exact numpy)",
        f"{described}; dim 128 cosine; exact numpy search {numpy_ms:.2f} ms/query; each configuration "
        "built in a fresh process, no WAL, each upsert batch flushed, HNSW built by optimize()",
        table(
            [
                "points",
                "config",
                "segments",
                "query ef",
                "upsert + build s",
                "points/s incl. build",
                "p50 ms",
                "p99 ms",
                "recall@10",
                "p50 / numpy",
                "peak RSS growth MB",
            ],
            rows,
        ),
    )


if __name__ == "__main__":
    main()
