"""Serving at load: requests/s and p50/p95/p99 at 1, 8 and 32 clients, against the CPU's floor (issue 30).

    python benchmarks/load.py [--category fashion-mnist] [--seconds 3] [--clients 1,8,32]
                              [--baseline-src /work/main] [--servers default,workers2]

Needs an indexed category in VISEARCH_HOME (run `make demo` first); the background writes add
images to it (use a copy of the home). In this process: the floor, ``cores ÷ the median
single-threaded ONNX forward of the live model at batch 1``, and the decode floor of the phone
photo (``cores ÷ its decode at the model's scale``). Then each server of ``--servers`` (and, with
``--baseline-src``, the same service from another source tree, e.g. main before this change, in
the same run) on a free loopback port: thin raw-socket keep-alive clients (latency.py's
``RawClient``) send one prepared request for ``--seconds`` per row, to /search (multipart PNG),
/search_raw (PNG body) and /search_raw with a 12-megapixel phone JPEG; each row once without
writes and once with catalogue adds arriving at 10 per second (``POST /categories/{c}/images``).
The figure of the issue: ``throughput ratio = requests/s at 8 clients on /search ÷ floor``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: photos

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from common import table, write_result  # noqa: E402
from latency import RawClient, free_port, live_model_dir, prepared_request  # noqa: E402

from tests.helpers import phone_photo, photo  # noqa: E402
from visearch.cli.serve import serve_command, serve_env, wait_ready  # noqa: E402
from visearch.data.images import decode_image  # noqa: E402
from visearch.inference import OnnxEmbedder, preprocess  # noqa: E402
from visearch.model_files import ONNX_FILE, read_spec  # noqa: E402
from visearch.query_input import decode_side  # noqa: E402
from visearch.settings import Settings  # noqa: E402
from visearch.storage import make_store  # noqa: E402

API_KEY = "load-benchmark-key"
# Server variants: the settings (env) each runs with on top of the defaults.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "workers2": {"SERVE_WORKERS": "2"},
    "wait2ms": {"BATCH_WAIT_MS": "2"},
    "threads2": {"INFERENCE_THREADS": "2"},
}


def median_ms(call: Any, repeats: int) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def floors(settings: Settings, category: str, image: bytes, phone: bytes) -> dict[str, float]:
    """Single-threaded ONNX forward at batch 1 of the live model, and the phone photo's decode (ms)."""
    folder = live_model_dir(settings, category)
    spec = read_spec(folder)
    model = OnnxEmbedder(folder / ONNX_FILE, spec, threads=1)
    side = decode_side(spec.input_size)
    batch = preprocess([decode_image(image, min_side=side)], spec)
    # The lowest of three medians: on a shared machine another job's burst inflates one round, and
    # the floor is what the CPU allows, not what the neighbours left.
    return {
        "forward": min(median_ms(lambda: model.embed(batch), 200) for _ in range(3)),
        "decode": min(median_ms(lambda: decode_image(phone, min_side=side), 30) for _ in range(3)),
        "side": float(side),
    }


def start(settings: Settings, port: int, source: Path | None, env_overrides: dict[str, str]) -> subprocess.Popen[bytes]:
    env = serve_env(settings)
    env["VISEARCH_API_KEY"] = API_KEY
    env.update(env_overrides)
    if source is not None:  # another source tree (the baseline): its library and service first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), str(source)])
    if "SERVE_WORKERS" in env_overrides:  # what `visearch serve` does with the setting (serve_env)
        workers = int(env_overrides["SERVE_WORKERS"])
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {"visearch": {"workers": workers}}})
    return subprocess.Popen(
        serve_command(port=port, host="127.0.0.1"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Resident memory of the server and its worker processes (MB)."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


def thread_cpu(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """CPU seconds so far of the server's threads, by what they run: the event loop (each worker's main
    thread: HTTP parsing, routing, middlewares, responses), the index engine's search pool, and the rest
    (the request threads: the library's query, the forward, BentoML's API wrapper)."""
    spent = {"event loop": 0.0, "engine pool": 0.0, "request threads": 0.0}
    root = psutil.Process(process.pid)
    for member in [root, *root.children(recursive=True)]:
        try:
            threads = member.threads()
        except psutil.NoSuchProcess:
            continue
        for thread in threads:
            try:
                name = Path(f"/proc/{member.pid}/task/{thread.id}/comm").read_text().strip()
            except OSError:
                name = ""
            kind = (
                "event loop"
                if thread.id == member.pid
                else "engine pool"
                if name.startswith("edge-")
                else "request threads"
            )
            spent[kind] += thread.user_time + thread.system_time
    return spent


class Writer(threading.Thread):
    """Catalogue adds at ``rate`` per second over HTTP until stopped; counts adds and failures."""

    def __init__(self, url: str, category: str, cls: str, rate: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.url, self.category, self.cls, self.period = url, category, cls, 1.0 / rate
        self.stop = threading.Event()
        self.done = self.failed = 0
        self.statuses: dict[str, int] = {}  # failed adds by HTTP status (or error)
        self.images: list[bytes] = []
        for index in range(40):
            buffer = io.BytesIO()
            photo(index, size=64).save(buffer, format="PNG")
            self.images.append(buffer.getvalue())

    def run(self) -> None:
        with httpx.Client(timeout=30, headers={"X-API-Key": API_KEY}) as client:
            tick = time.monotonic()
            while not self.stop.is_set():
                number = self.done + self.failed
                row = {"class": self.cls, "file": f"load-{time.time_ns()}.png"}
                try:
                    response = client.post(
                        f"{self.url}/categories/{self.category}/images",
                        files={"image": ("add.png", self.images[number % len(self.images)], "image/png")},
                        data={"row": json.dumps(row)},
                    )
                    ok = response.status_code in (200, 201)
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    ok, status = False, type(exc).__name__
                if not ok:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                self.done += ok
                self.failed += not ok
                tick += self.period
                self.stop.wait(max(0.0, tick - time.monotonic()))


def drive(port: int, request: bytes, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """``clients`` keep-alive connections replaying ``request`` for ``seconds``: latencies, errors, requests/s."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    go = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(number: int) -> None:
        connection = RawClient(port, request)
        for _ in range(3):  # warm-up
            connection.send()
        go.wait()
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                connection.send()
            except (OSError, RuntimeError, ValueError, StopIteration):
                errors[number] += 1
                connection = RawClient(port, request)
                continue
            samples[number].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds + 60  # provisional until all are connected
    go.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for thread in threads:
        thread.join()
    flat = [value for per_client in samples for value in per_client]
    return flat, sum(errors), len(flat) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="fashion-mnist")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--servers", default="default", help=f"comma-separated of {', '.join(VARIANTS)}")
    parser.add_argument("--baseline-src", type=Path, default=None, help="source tree of the baseline service")
    parser.add_argument("--phone-quality", type=int, default=97, help="JPEG quality of the phone photo (size)")
    parser.add_argument("--result", default="load")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    settings = Settings()
    store = make_store(settings)
    image_key = next(iter(store.list(f"datasets/{args.category}/images")), None)
    if image_key is None:
        raise SystemExit(f"no images for {args.category} in {settings.home}: run `make demo` first")
    image = store.get_bytes(image_key)
    cls = image_key.split("/")[-2]
    phone = phone_photo(quality=args.phone_quality)
    floor = floors(settings, args.category, image, phone)
    cores = settings.cores
    floor_rps = cores / floor["forward"] * 1000
    decode_rps = cores / floor["decode"] * 1000
    print(f"floor {floor} cores {cores} -> {floor_rps:.0f} req/s; phone decode floor {decode_rps:.0f}/s", flush=True)
    routes = [
        ("/search (PNG, multipart)", "/search", "multipart", image, "image/png"),
        ("/search_raw (PNG body)", "/search_raw", "raw", image, "image/png"),
        (f"/search_raw phone JPEG ({len(phone) / 1e6:.1f} MB)", "/search_raw", "raw", phone, "image/jpeg"),
    ]
    servers: list[tuple[str, Path | None, dict[str, str]]] = []
    if args.baseline_src:
        servers.append((f"before ({args.baseline_src.name})", args.baseline_src, {}))
    servers += [(name, None, VARIANTS[name]) for name in args.servers.split(",")]
    rows: list[list[object]] = []
    ratios: dict[str, float] = {}
    memory: list[list[object]] = []
    cpu: list[list[object]] = []  # CPU per request by thread kind, /search at 8 clients without writes
    p99s: dict[tuple[str, bool], float] = {}  # /search at 8 clients: p99 by (server, writes)
    for label, source, overrides in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(settings, port, source, overrides)
        try:
            if not wait_ready(url, server, timeout=300):
                raise SystemExit(f"{label}: the server did not become ready")
            for writes in (False, True):
                writer = Writer(url, args.category, cls) if writes else None
                if writer:
                    writer.start()
                    # Rows measure adds arriving steadily: the first add of a process loads what writes
                    # need (the category's rows, the caption model; ~0.1 s holding the GIL) before them.
                    while writer.done + writer.failed < 3 and writer.is_alive():
                        time.sleep(0.05)
                for route_label, route, body, data, media in routes:
                    request = prepared_request(url, port, route, body, data, media, args.category)
                    for clients in map(int, args.clients.split(",")):
                        profiled = route == "/search" and clients == 8 and not writes
                        before, own = thread_cpu(server), time.process_time()
                        samples, errors, rate = drive(port, request, clients, args.seconds)
                        if profiled:
                            after, served = thread_cpu(server), rate * args.seconds
                            spent = {kind: (after[kind] - before[kind]) * 1000 / served for kind in after}
                            client = (time.process_time() - own) * 1000 / served
                            cpu.append([label, *(f"{v:.2f}" for v in spent.values()), f"{sum(spent.values()):.2f}"])
                            cpu[-1].append(f"{client:.2f}")
                        p50, p95, p99 = (np.percentile(samples, [50, 95, 99]) * 1000).tolist()
                        against = decode_rps if "phone" in route_label else floor_rps
                        if route == "/search" and clients == 8:
                            p99s[(label, writes)] = p99
                            if not writes:
                                ratios[label] = rate / floor_rps
                        rows.append(
                            [
                                label,
                                route_label,
                                "10/s" if writes else "none",
                                clients,
                                f"{rate:.0f}",
                                f"{rate / against:.2f}",
                                f"{p50:.1f}",
                                f"{p95:.1f}",
                                f"{p99:.1f}",
                                errors,
                            ]
                        )
                        print(rows[-1], f"load {os.getloadavg()[0]:.1f}", flush=True)
                if writer:
                    writer.stop.set()
                    writer.join()
                    failed = f"{writer.failed} failed {writer.statuses}" if writer.failed else "0 failed"
                    print(f"writes: {writer.done} added, {failed}", flush=True)
                    rows[-1][-1] = f"{rows[-1][-1]} (adds: {writer.done} ok, {failed})"
            memory.append([label, overrides.get("SERVE_WORKERS", "1"), f"{rss_mb(server):.0f}"])
        finally:
            server.terminate()
            server.wait(timeout=60)
    body = (
        f"Floor: {cores} cores ÷ {floor['forward']:.2f} ms (median single-threaded ONNX forward of the live model at "
        f"batch 1) = **{floor_rps:.0f} requests/s**. Phone photo decode floor: {cores} cores ÷ "
        f"{floor['decode']:.2f} ms (decode at the model's scale, shorter side ≥ {floor['side']:.0f}) = "
        f"{decode_rps:.0f}/s.\n\n"
        + "**Throughput ratio** (requests/s at 8 clients on /search ÷ floor): "
        + ", ".join(f"{label} **{ratio:.2f}**" for label, ratio in ratios.items())
        + "\n\n"
        + table(
            [
                "server",
                "route",
                "writes",
                "clients",
                "requests/s",
                "÷ floor",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "errors",
            ],
            rows,
        )
        + "\n\n**p99 with adds at 10/s ÷ without** (/search, 8 clients): "
        + ", ".join(f"{label} **{p99s[(label, True)] / p99s[(label, False)]:.2f}**" for label in ratios)
        + "\n\nWhere a server's CPU went on /search at 8 clients without writes (ms per request, its threads "
        + "by kind; the clients' own CPU beside it):\n\n"
        + table(["server", "event loop", "engine pool", "request threads", "server total", "clients"], cpu)
        + "\n\nResident memory after the run (server and its workers, demo category loaded):\n\n"
        + table(["server", "workers", "RSS MB"], memory)
    )
    write_result(
        args.result,
        "Serving at load (issue 30)",
        f"category {args.category}, {args.seconds:.0f} s per row, image {image_key}, clients {args.clients}; "
        f"load average {load_at_start:.1f} at the start (the clients run on the same cores)",
        body,
    )


if __name__ == "__main__":
    main()
