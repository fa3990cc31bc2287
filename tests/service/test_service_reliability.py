"""The service under fuzzing and load: no server error, no failed request, flat memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import ROOT, TINY, copy_home
from tests.service.server import running_service
from visearch.settings import Settings

LOAD_CLIENTS = 16
LOAD_SECONDS = float(os.environ.get("VISEARCH_LOAD_SECONDS", "60"))
MEMORY_GROWTH_LIMIT_MB = 200


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (BentoML runs the service in a child)."""
    pids, total = [pid], 0.0
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1024
        pids += [int(child) for child in children]
    return total


API_KEY = "contract-test-key"
HOOKS = ROOT / "tests" / "service" / "schemathesis_hooks.py"


@pytest.fixture(scope="module")
def served(
    indexed_home: Settings, server_tmpdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The service with an API key, so the fuzzing reaches the admin endpoints' real answers.

    On a copy of the indexed home: with the key the fuzzing may add to or remove from a category.
    """
    log = tmp_path_factory.mktemp("service") / "server.log"
    home = copy_home(indexed_home, log.parent / "home")
    with running_service(home, log, {"TMPDIR": str(server_tmpdir), "VISEARCH_API_KEY": API_KEY}) as running:
        yield running


@pytest.mark.slow
def test_the_openapi_contract_holds_under_every_schemathesis_check(
    served: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Examples, coverage and fuzzing with every check: the server answers exactly what its document says.

    The admin endpoints get the API key (and schemathesis' auth checks send requests without it).
    """
    url, _ = served
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/docs.json",
        "--url",
        url,
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "60",
        "--seed",
        "7",
        "--request-timeout",
        "60",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--continue-on-failure",
    ]
    # The hooks teach schemathesis what an image file is (real PNG, JPEG... bytes for the media
    # types the document gives file fields); PYTHONPATH lets them import serving.contract.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    for phase in ("Coverage", "Fuzzing"):  # both phases ran and sent requests
        assert re.search(phase + r" \(in [^)]*\)\s+\S+\s+\d+ passed", result.stdout), result.stdout[-6000:]
    assert not re.search(r"\d+ failed", result.stdout), result.stdout[-6000:]
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200  # still up and ready after the fuzzing


@pytest.mark.slow
def test_sixteen_clients_get_no_errors_and_memory_stays_flat(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, pid = served[0], served[1].pid
    with httpx.Client(base_url=url, timeout=60) as client:
        example = client.get(f"/categories/{TINY}/examples", params={"limit": 1}).json()[0]
        image = client.get(example["image_url"]).content
        for _ in range(20):  # warm-up: model load, allocator, first-call caches
            client.post("/search", files={"image": ("q.png", image, "image/png")}, data={"category": TINY, "k": "10"})
    baseline_mb = tree_rss_mb(pid)
    deadline = time.monotonic() + LOAD_SECONDS

    def client_loop(_: int) -> tuple[list[float], list[str]]:
        latencies, errors = [], []
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.post(
                        "/search", files={"image": ("q.png", image, "image/png")}, data={"category": TINY, "k": "10"}
                    )
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["results"][0]["id"] != example["id"]:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
        return latencies, errors

    with ThreadPoolExecutor(max_workers=LOAD_CLIENTS) as pool:
        outcomes = list(pool.map(client_loop, range(LOAD_CLIENTS)))
    latencies = [value for lat, _ in outcomes for value in lat]
    errors = [error for _, errs in outcomes for error in errs]
    growth = tree_rss_mb(pid) - baseline_mb
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]) * 1000).round(1)
    print(
        f"\nload: {LOAD_CLIENTS} clients x {LOAD_SECONDS:.0f} s: {len(latencies)} requests, "
        f"{len(latencies) / LOAD_SECONDS:.1f}/s, p50 {p50} ms, p95 {p95} ms, p99 {p99} ms, "
        f"errors {len(errors)}, memory growth {growth:.0f} MB"
    )
    assert not errors, errors[:5]
    assert len(latencies) >= LOAD_CLIENTS
    assert growth < MEMORY_GROWTH_LIMIT_MB
