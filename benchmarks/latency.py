"""Query latency end to end over HTTP vs the bare model forward of one preprocessed image.

    python benchmarks/latency.py [--category fashion-mnist] [--requests 200] [--clients 1,8] [--photo-requests 100]

Needs an indexed category in VISEARCH_HOME (run `make demo` or `visearch pipeline run` first).
Starts the real service on a free loopback port, uploads one image per request (k=10), and
reports p50/p95/p99 per client count, against the floor measured in this process: the forward
pass of one preprocessed image, on ONNX Runtime (what the service uses) and on torch eager. Each
client keeps one connection open (as any real client would). Also measured in this process: the
whole library query (decode + preprocess + forward + index query), i.e. the service minus HTTP.
The same for a 12-megapixel phone JPEG (tests/helpers.py ``phone_photo``, ~1.2 MB, EXIF-rotated):
decoded at the scale the model needs (what the service does) and at full size (before), over HTTP
with one client per row as well.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: the phone photo

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from common import table, write_result  # noqa: E402

from tests.helpers import PHONE_SIZE, phone_photo  # noqa: E402
from visearch.categories import load_registry  # noqa: E402
from visearch.cli.serve import serve_command, serve_env, wait_ready  # noqa: E402
from visearch.data.images import decode_image  # noqa: E402
from visearch.index import open_index  # noqa: E402
from visearch.inference import load_embedder, preprocess  # noqa: E402
from visearch.search import SearchEngine  # noqa: E402
from visearch.settings import Settings  # noqa: E402
from visearch.storage import make_store  # noqa: E402

MODEL_FILES = ("trunk.pth", "embedder.pth", "meta.json", "model.onnx")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(samples, [50, 95, 99]) * 1000
    return float(p50), float(p95), float(p99)


def floor_ms(settings: Settings, category: str, image_bytes: bytes, repeats: int = 200) -> dict[str, float]:
    """Median forward time of one preprocessed image per backend (the in-process floor)."""
    index = open_index(settings)
    try:
        version = index.require_live(category).model_version
    finally:
        index.close()
    store = make_store(settings)
    cache = settings.home / "cache"
    paths = [
        store.local_path(f"models/{category}/{version}/{name}", cache)
        for name in MODEL_FILES
        if store.exists(f"models/{category}/{version}/{name}")
    ]
    result = {}
    for backend in ("onnx", "torch"):
        embedder = load_embedder(paths[0].parent, backend=backend, onnx_cache=cache / "onnx")
        batch = preprocess([decode_image(image_bytes)], embedder.spec)
        embedder.embed(batch)
        times = []
        for _ in range(repeats if backend == "onnx" else repeats // 4):
            started = time.perf_counter()
            embedder.embed(batch)
            times.append(time.perf_counter() - started)
        result[backend] = statistics.median(times) * 1000
    return result


def raw_request(request: httpx.Request, port: int) -> bytes:
    """The exact bytes of ``request`` as HTTP/1.1 with keep-alive."""
    body = request.read()
    head = [
        f"POST {request.url.raw_path.decode()} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: {request.headers['content-type']}",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawClient:
    """A keep-alive connection that replays prepared request bytes and reads one response.

    Costs microseconds per request, so its latency is the server's plus the loopback: the figure a
    client in C or Go would see. (httpx, also measured, adds ~3 ms of Python per request here.)
    """

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request

    def send(self) -> None:
        self.sock.sendall(self.request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self.sock.recv(65536)
        head, _, body = buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += self.sock.recv(65536)


def library_query_ms(
    settings: Settings, category: str, image_bytes: bytes, repeats: int = 300, *, full_decode: bool = False
) -> tuple[float, float]:
    """Medians (wall ms, CPU ms) of the service's query path without HTTP: ``SearchEngine.search_bytes`` here.

    ``full_decode``: the image decoded at full size first (the query path before decoding at the model's scale).
    The CPU time (all threads of this process) is what a query costs on a machine other jobs share:
    the wall time of a lone query is at most that.
    """
    engine = SearchEngine(
        settings, load_registry(settings.visearch_categories), make_store(settings), open_index(settings)
    )

    def query() -> None:
        if full_decode:
            engine.search_image(category, engine.decode(image_bytes), k=10)
        else:
            engine.search_bytes(category, image_bytes, k=10)

    try:
        for _ in range(10):
            query()
        times, cpu = [], []
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            query()
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    finally:
        engine.close()
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="fashion-mnist")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--result", default="latency", help="results file name (benchmarks/results/NAME.md)")
    parser.add_argument("--photo-requests", type=int, default=100, help="requests per phone-photo row (0: none)")
    args = parser.parse_args()
    settings = Settings()
    store = make_store(settings)
    image_key = next(iter(store.list(f"datasets/{args.category}/images")), None)
    if image_key is None:
        raise SystemExit(f"no images for {args.category} in {settings.home}: run `make demo` first")
    image_bytes = store.get_bytes(image_key)
    floors = floor_ms(settings, args.category, image_bytes)
    library_ms, library_cpu = library_query_ms(settings, args.category, image_bytes)
    photo = phone_photo()
    photo_ms = photo_cpu = photo_full_ms = photo_full_cpu = 0.0
    if args.photo_requests:
        photo_ms, photo_cpu = library_query_ms(settings, args.category, photo, args.photo_requests)
        photo_full_ms, photo_full_cpu = library_query_ms(
            settings, args.category, photo, args.photo_requests // 4, full_decode=True
        )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        serve_command(port=port, host="127.0.0.1"),
        env=serve_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        if not wait_ready(url, server, timeout=180):
            raise SystemExit("the service did not become ready")
        data = {"category": args.category, "k": "10"}
        queries = [("demo", {"image": ("query.png", image_bytes, "image/png")}, args.requests, library_ms)]
        if args.photo_requests:
            queries.append(
                ("phone photo", {"image": ("photo.jpg", photo, "image/jpeg")}, args.photo_requests, photo_ms)
            )
        plan = []
        for image_name, files, requests, library in queries:
            with httpx.Client(timeout=30) as client:
                for _ in range(10):  # warm-up: model load, first-call allocations
                    client.post(f"{url}/search", files=files, data=data).raise_for_status()
                # The request as bytes, so a thin client can replay it (what a C client costs).
                prepared = client.build_request("POST", f"{url}/search", files=files, data=data)
                request = raw_request(prepared, port)
            kinds = ("raw socket", "httpx") if image_name == "demo" else ("raw socket",)
            plan += [(image_name, files, requests, library, request, kind) for kind in kinds]
        for image_name, files, requests, library, request, kind in plan:
            for clients in map(int, args.clients.split(",")):
                local = threading.local()

                def one(
                    _: int,
                    local: threading.local = local,
                    kind: str = kind,
                    request: bytes = request,
                    files: Any = files,
                ) -> float:
                    if not hasattr(local, "client"):  # one keep-alive connection per client thread
                        local.client = RawClient(port, request) if kind == "raw socket" else httpx.Client(timeout=30)
                    started = time.perf_counter()
                    if kind == "raw socket":
                        local.client.send()
                    else:
                        local.client.post(f"{url}/search", files=files, data=data).raise_for_status()
                    return time.perf_counter() - started

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    samples = list(pool.map(one, range(requests)))
                rate = requests / (time.perf_counter() - started)
                p50, p95, p99 = percentiles(samples)
                rows.append(
                    [
                        image_name,
                        kind,
                        clients,
                        f"{p50:.1f}",
                        f"{p95:.1f}",
                        f"{p99:.1f}",
                        f"{rate:.0f}",
                        f"{p50 / floors['onnx']:.2f}x",
                        f"{p50 / library:.2f}x",
                    ]
                )
                print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    body = table(
        [
            "image",
            "client",
            "clients",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "requests/s",
            "p50 / ONNX floor",
            "p50 / library query",
        ],
        rows,
    )
    body += (
        f"\n\nFloor (bare forward of one preprocessed image, same machine): ONNX Runtime "
        f"{floors['onnx']:.2f} ms, torch eager {floors['torch']:.2f} ms "
        f"(ONNX {floors['torch'] / floors['onnx']:.1f}x faster; the service uses ONNX). "
        f"The library query in-process (decode + preprocess + forward + index query, k=10): "
        f"{library_ms:.2f} ms p50 ({library_ms / floors['onnx']:.2f}x the floor; CPU {library_cpu:.2f} ms); the rest of "
        f"the one-client p50 is HTTP: multipart parsing, BentoML, the client."
    )
    if args.photo_requests:
        body += (
            f"\n\nPhone photo ({PHONE_SIZE[0]}x{PHONE_SIZE[1]} JPEG, {len(photo) / 1e6:.2f} MB, EXIF orientation 6), "
            f"library query p50: {photo_ms:.2f} ms decoded at the model's scale (JPEG draft; "
            f"{photo_ms / library_ms:.1f}x the demo image; CPU {photo_cpu:.2f} ms), {photo_full_ms:.2f} ms decoded "
            f"at full size (before; {photo_full_ms / photo_ms:.1f}x slower; CPU {photo_full_cpu:.2f} ms)."
        )
    write_result(
        args.result,
        "Query latency over HTTP (upload one image, k=10)",
        f"category {args.category}, {args.requests} requests per row, image {image_key}",
        body,
    )


if __name__ == "__main__":
    main()
