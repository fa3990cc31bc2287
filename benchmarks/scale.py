"""The full Fashion-MNIST end to end: prepare, the pipeline, then the service, as a user runs them.

    python benchmarks/scale.py [--images 70000] [--train-images-per-class N] [--epochs 6]
                               [--requests 200] [--quality-images 2000] [--quality-epochs 2] [--result scale]

On a fresh data home: `visearch prepare fashion-mnist --split all -c fashion-mnist-full` (train + t10k:
70,000 images; ``--images N`` takes N/10 per class), `visearch pipeline run` (kfp.local, one process per step),
then `visearch serve` and /search from 1 and 8 clients (keep-alive raw sockets, benchmarks/latency.py).
Per step: wall time, images/s (the category's images over the step's seconds; train: images trained
on x epochs), peak resident memory (the step's process tree, sampled every 0.2 s) and the data home's
disk afterwards. Training runs on the TRAINING BUDGET (``--train-images-per-class``, default the
registry's 100, sampled per class) while every image is evaluated, embedded and indexed; ``--quality-images`` measures what the
budget costs on a smaller run (the same steps with and without it, one manifest). Results go to
benchmarks/results/<result>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402
from common import RESULTS, table, write_result  # noqa: E402
from latency import RawClient, free_port, percentiles, raw_request  # noqa: E402

from visearch.cli.serve import wait_ready  # noqa: E402

CATEGORY = "fashion-mnist-full"
FULL = 70_000
STEPS = ("preprocess", "train", "evaluate", "shards", "embed", "upsert")
MAP_R = "mean_average_precision_at_r"
# kfp.local runs each component as `python -m kfp.dsl.executor_main ... --function_to_execute <step>`.
STEP_PATTERN = re.compile(r"--function_to_execute\s+(\w+)")
SAMPLE = 0.2  # seconds between samples of the process tree


@dataclass
class Usage:
    """What one command (or each kfp step inside it) took: seconds and peak resident bytes."""

    seconds: float = 0.0
    peak_rss: int = 0
    steps: dict[str, list[float]] = field(default_factory=dict)  # step -> [first seen, last seen, peak rss]


def visearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "visearch.cli", *args]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(command: list[str], env: dict[str, str], log: Path) -> Usage:
    """Run ``command`` to completion, sampling its process tree; attribute kfp step processes by name."""
    usage = Usage()
    print(f"running {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            now = time.perf_counter() - started
            try:
                usage.peak_rss = max(usage.peak_rss, tree_rss(root))
                for child in root.children(recursive=True):
                    match = STEP_PATTERN.search(" ".join(child.cmdline()))
                    if match:
                        first, _, peak = usage.steps.get(match.group(1), [now, now, 0])
                        usage.steps[match.group(1)] = [first, now, max(peak, tree_rss(child))]
            except psutil.Error:
                pass  # a step ended between listing and reading it
            time.sleep(SAMPLE)
    usage.seconds = time.perf_counter() - started
    print(f"  done in {usage.seconds:.0f} s", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:5])} failed (exit {proc.returncode}); see {log}")
    return usage


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def mib(size: int) -> str:
    return f"{size / 2**20:.1f}"


def measure_latency(
    url: str, port: int, image: bytes, requests: int, clients: int
) -> tuple[float, float, float, float]:
    """p50/p95/p99 ms and requests/s of /search (k=10) from ``clients`` keep-alive raw-socket clients."""
    files = {"image": ("query.png", image, "image/png")}
    data = {"category": CATEGORY, "k": "10"}
    with httpx.Client(timeout=60) as client:
        for _ in range(5):  # warm-up: model load, first-call allocations
            client.post(f"{url}/search", files=files, data=data).raise_for_status()
        request = raw_request(client.build_request("POST", f"{url}/search", files=files, data=data), port)
    local = threading.local()

    def one(_: int) -> float:
        if not hasattr(local, "client"):
            local.client = RawClient(port, request)
        begun = time.perf_counter()
        local.client.send()
        return time.perf_counter() - begun

    begun = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        samples = list(pool.map(one, range(requests)))
    rate = requests / (time.perf_counter() - begun)
    return (*percentiles(samples), rate)


def serve_and_measure(env: dict[str, str], home: Path, requests: int, log: Path) -> tuple[list[list[object]], int]:
    """`visearch serve` on a free port: /search latency rows for 1 and 8 clients, and the service's RSS."""
    image_dir = home / "objects" / "datasets" / CATEGORY / "images"
    image = next(image_dir.rglob("*.png")).read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        server = subprocess.Popen(
            visearch("serve", "--port", str(port), "--host", "127.0.0.1"), env=env, stdout=out, stderr=out
        )
    rows: list[list[object]] = []
    try:
        if not wait_ready(url, server, timeout=300):
            raise SystemExit(f"the service did not become ready; see {log}")
        for clients in (1, 8):
            p50, p95, p99, rate = measure_latency(url, port, image, requests, clients)
            rows.append([clients, requests, f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", f"{rate:.1f}"])
            print(rows[-1], flush=True)
        rss = tree_rss(psutil.Process(server.pid))
    finally:
        for proc in [*psutil.Process(server.pid).children(recursive=True), psutil.Process(server.pid)]:
            try:
                proc.terminate()
            except psutil.Error:
                continue
        server.wait(timeout=60)
    return rows, rss


def quality(
    env: dict[str, str], home: Path, budget: int, epochs: int, extra: list[str], log: Path
) -> list[list[object]]:
    """The same manifest trained on the budget's sample and on every training image; test metrics of each."""
    work = home / "work" / CATEGORY
    rows: list[list[object]] = []
    for name, per_class in (("all training images", 0), (f"budget: {budget} per class", budget)):
        out = work / f"train-{per_class}"
        flags = ["--epochs", str(epochs), "--train-images-per-class", str(per_class), *extra]
        usage = run_measured(visearch("train", "-c", CATEGORY, "--out", str(out), *flags), env, log)
        metrics = work / f"metrics-{per_class}"  # evaluate writes report.json (and the embedding map) there
        models = ["--model", str(out), "--out", str(metrics)]
        run_measured(visearch("evaluate", "-c", CATEGORY, *models), env, log)
        report = json.loads((metrics / "report.json").read_text(encoding="utf-8"))
        tuned, baseline = report["tuned"], report["baseline"]
        rows.append(
            [
                name,
                f"{usage.seconds:.0f}",
                f"{tuned['in_domain'][MAP_R]:.3f}",
                f"{tuned['class_disjoint'][MAP_R]:.3f}",
                f"{tuned['in_domain']['precision_at_1']:.3f}",
            ]
        )
    rows.append(
        [
            "frozen trunk (no training)",
            "0",
            f"{baseline['in_domain'][MAP_R]:.3f}",
            f"{baseline['class_disjoint'][MAP_R]:.3f}",
            f"{baseline['in_domain']['precision_at_1']:.3f}",
        ]
    )
    return rows


def prepare(env: dict[str, str], images: int, log: Path) -> Usage:
    per_class = [] if images >= FULL else ["--per-class", str(max(images // 10, 1))]
    return run_measured(visearch("prepare", "fashion-mnist", "--split", "all", "-c", CATEGORY, *per_class), env, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=FULL, help="images in all (N/10 per class; 70000: all)")
    parser.add_argument(
        "--train-images-per-class", type=int, default=None, help="training budget (default: the registry's; 0: all)"
    )
    parser.add_argument(
        "--eval-images-per-class", type=int, default=None, help="evaluation budget (default: the registry's)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the registry's")
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after N steps (smoke runs)")
    parser.add_argument("--requests", type=int, default=200, help="/search requests per client count")
    parser.add_argument("--quality-images", type=int, default=2000, help="size of the budget-vs-all run (0: none)")
    parser.add_argument("--quality-epochs", type=int, default=2, help="epochs of the budget-vs-all run (0: --epochs)")
    parser.add_argument("--home", type=Path, default=None, help="data home to fill (default: a temporary one)")
    parser.add_argument("--result", default="scale", help="results file name (benchmarks/results/NAME.md)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where NAME.md goes")
    args = parser.parse_args()
    from visearch.categories import load_registry

    params = load_registry().get(CATEGORY).train
    epochs = args.epochs if args.epochs is not None else params.epochs
    given = args.train_images_per_class
    budget = params.train_images_per_class if given is None else (given or None)
    extra = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    with tempfile.TemporaryDirectory(prefix="visearch-scale-") as folder:
        home = args.home or Path(folder) / "home"
        log = Path(tempfile.gettempdir()) / f"visearch-{args.result}.log"  # kept: where a failed step says why
        log.unlink(missing_ok=True)
        print(f"logs: {log}", flush=True)
        env = {**os.environ, "VISEARCH_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        total = time.perf_counter()
        prepared = prepare(env, args.images, log)
        datasets = disk(home / "objects" / "datasets")
        flags = ["--epochs", str(epochs), "--train-images-per-class", str(budget or 0), *extra]
        if args.eval_images_per_class:
            flags += ["--eval-images-per-class", str(args.eval_images_per_class)]
        pipeline = run_measured(
            visearch("pipeline", "run", "--categories", CATEGORY, "--log-file", str(Path(folder) / "kfp.log"), *flags),
            env,
            log,
        )
        meta = home / "objects" / "datasets" / CATEGORY / "meta.csv"
        count = sum(1 for _ in meta.open(encoding="utf-8")) - 1  # the images prepare wrote (header aside)
        after = disk(home)
        gate = gate_metrics(home)
        latency, service_rss = serve_and_measure(env, home, args.requests, log)
        wall = time.perf_counter() - total
        trained = int(params.split * 10 * min(budget or count, count / 10 * (1 - params.holdout)))
        passes = trained * epochs
        if args.max_steps:
            passes = min(passes, args.max_steps * params.batch_size)
        body = steps_table(prepared, pipeline, count, trained, passes, datasets, after)
        body += f"\n\nEnd to end (prepare + pipeline + service start + latency): {wall:.0f} s.\n\n"
        body += "## /search latency on the indexed category (k=10, keep-alive raw-socket clients)\n\n"
        body += table(["clients", "requests", "p50 ms", "p95 ms", "p99 ms", "requests/s"], latency)
        body += f"\n\nService resident memory after the runs: {mib(service_rss)} MiB."
        body += (
            "\n\n## The gate's evaluation of this run (test split, on the evaluation budget's sample)\n\n"
            f"{gate['evaluated']} images scored per model (`gate.evaluated_images`); gate: {gate['reason']}\n\n"
        )
        body += table(["model", "evaluation", "P@1", "MAP@R", "R@10", "MAP@R vs frozen"], gate["rows"])
        if args.quality_images and budget:
            qhome = Path(folder) / "quality"
            qenv = {**env, "VISEARCH_HOME": str(qhome)}
            prepare(qenv, args.quality_images, log)
            run_measured(visearch("preprocess", "-c", CATEGORY), qenv, log)
            quality_epochs = args.quality_epochs or epochs
            rows = quality(qenv, qhome, budget, quality_epochs, extra, log)
            body += (
                f"\n\n## What the training budget costs ({args.quality_images} images, one manifest, "
                f"{quality_epochs} epochs)\n\n"
                "Test-split metrics (the gate's): in-domain = held-out images of the training classes, "
                "class-disjoint = the classes never trained on.\n\n"
            )
            body += table(["trained on", "train s", "in-domain MAP@R", "class-disjoint MAP@R", "in-domain P@1"], rows)
    budget_text = f"{budget} images per class" if budget else "none (every training image)"
    budget_text += f"; evaluation budget {args.eval_images_per_class or params.eval_images_per_class} per class"
    write_result(
        args.result,
        "Scale run: Fashion-MNIST end to end (prepare → pipeline → service)",
        f"{args.images} images ({'train + t10k' if args.images >= FULL else f'{args.images // 10} per class'}), "
        f"registry parameters of {CATEGORY} with epochs {epochs}"
        + (f", max_steps {args.max_steps}" if args.max_steps else "")
        + f"; training budget {budget_text}; {args.requests} /search requests per client count",
        body,
        folder=args.results_dir,
    )


def gate_metrics(home: Path) -> dict[str, object]:
    """The pipeline run's gate metrics (frozen trunk and fine-tuned), read back from its MLflow store."""
    from mlflow.tracking import MlflowClient

    from visearch.settings import Settings
    from visearch.tracking import experiment_name

    client = MlflowClient(Settings(visearch_home=home).tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(CATEGORY))
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    metrics, tags = run.data.metrics, run.data.tags
    rows: list[list[object]] = []
    for evaluation in ("in_domain", "class_disjoint"):
        frozen = metrics.get(f"baseline.{evaluation}.{MAP_R}")
        for model in ("baseline", "tuned"):
            prefix = f"{model}.{evaluation}."
            if prefix + MAP_R not in metrics:
                continue
            ratio = f"{metrics[prefix + MAP_R] / frozen:.2f}x" if frozen else "-"
            values = (metrics[prefix + name] for name in ("precision_at_1", MAP_R, "recall_at_10"))
            rows.append([model, evaluation, *(f"{value:.3f}" for value in values), ratio])
    return {"rows": rows, "evaluated": tags.get("gate.evaluated_images", "?"), "reason": tags.get("gate.reason", "?")}


def steps_table(
    prepared: Usage,
    pipeline: Usage,
    count: int,
    trained: int,
    passes: int,
    datasets: int,
    after: int,
) -> str:
    rows: list[list[object]] = [
        [
            "prepare (PNGs + meta CSV)",
            f"{prepared.seconds:.1f}",
            f"{count / prepared.seconds:.0f}",
            mib(prepared.peak_rss),
        ]
    ]
    for step in STEPS:
        if step not in pipeline.steps:
            rows.append([step, "not seen", "-", "-"])  # shorter than one sample
            continue
        first, last, peak = pipeline.steps[step]
        seconds = last - first + SAMPLE  # seen from one sample to another: up to a sample more
        through = passes if step == "train" else count
        rate = f"{through / seconds:.0f}" if seconds > 0 and step != "shards" else "-"
        rows.append([step, f"{seconds:.1f}", rate, mib(int(peak))])
    rows.append(["pipeline run (all steps + kfp.local)", f"{pipeline.seconds:.1f}", "-", mib(pipeline.peak_rss)])
    text = table(["step", "wall s", "images/s", "peak RSS MiB"], rows)
    return (
        text + f"\n\n{count} images prepared, evaluated, embedded and indexed; train: about {trained} images "
        f"sampled, {passes} image passes (its images/s). Disk: the prepared dataset {mib(datasets)} MiB, the "
        f"whole data home after the pipeline {mib(after)} MiB."
    )


if __name__ == "__main__":
    main()
