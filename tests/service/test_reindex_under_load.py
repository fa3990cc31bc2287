"""Reindex under load: clients query without pause while another process writes a new index version
and swaps the alias, then rolls it back. Zero failed queries; the answers switch at the swap, once.

The embedded index keeps each version in its own shard folder and the alias in a pointer file,
so the pipeline (another process) can write while the service reads; the service resolves the
alias per request and loads the model that produced the vectors it queries.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import TINY, env_for, stop_server
from tests.service.server import start_server
from visearch.cli.serve import wait_ready
from visearch.index import open_index
from visearch.settings import Settings

pytestmark = pytest.mark.slow

CLIENTS = 4


def cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Load:
    """CLIENTS threads posting the same query until stopped; every answer is kept in order."""

    def __init__(self, url: str, image: bytes) -> None:
        self.url, self.image = url, image
        self.answers: list[tuple[float, int, tuple[tuple[str, float], ...] | str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]

    def client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                response = http.post(
                    "/search", data={"category": TINY, "k": "5"}, files={"image": ("q.png", self.image, "image/png")}
                )
                answered = time.monotonic()
                if response.status_code == 200:
                    answer = tuple((r["id"], round(r["score"], 4)) for r in response.json()["results"])
                    self.answers.append((answered, 200, answer))
                else:
                    self.answers.append((answered, response.status_code, response.text))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def since(self, moment: float) -> list[tuple[float, int, tuple[tuple[str, float], ...] | str]]:
        return [a for a in list(self.answers) if a[0] > moment]


def wait_for_answers(load: Load, after: float, count: int = 8, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(load.since(after)) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def test_queries_never_fail_while_another_process_reindexes_and_rolls_back(
    indexed_home: Settings, tmp_path: Path
) -> None:
    shutil.copytree(indexed_home.home, tmp_path / "home")
    home = Settings(
        visearch_home=tmp_path / "home", visearch_categories=tmp_path / "home" / "categories.yaml", _env_file=None
    )
    index = open_index(home)
    first = index.require_live(TINY)
    query_key = next(iter(sorted((home.objects_dir / "datasets" / TINY / "images").rglob("*.png"))))
    image = query_key.read_bytes()
    work = home.work_dir / TINY

    process, url = start_server(home, tmp_path / "server.log")
    try:
        assert wait_ready(url, process, timeout=180), (tmp_path / "server.log").read_text()[-3000:]
        with Load(url, image) as load:
            wait_for_answers(load, 0)
            reindex_started = time.monotonic()
            # The reindex: the frozen baseline model embeds the category and becomes a new live
            # version, written by other processes (the pipeline's embed and upsert steps).
            cli(home, "embed", "--category", TINY, "--model", str(work / "baseline"), "--out", str(tmp_path / "emb"))
            out = cli(
                home,
                "upsert",
                "--category",
                TINY,
                "--model",
                str(work / "baseline"),
                "--embeddings",
                str(tmp_path / "emb"),
            )
            swapped = time.monotonic()
            second = index.require_live(TINY)
            assert second.name != first.name and second.name in out
            wait_for_answers(load, swapped + 1.0)
            # The CLI searches the same home while the service serves it.
            assert "similarity" in cli(home, "search", "--category", TINY, str(query_key))
            rollback_started = time.monotonic()
            cli(home, "index", "rollback", "--category", TINY)
            rolled = time.monotonic()
            assert index.require_live(TINY).name == first.name
            wait_for_answers(load, rolled + 1.0)
    finally:
        stop_server(process)
        index.close()

    failures = [a for a in load.answers if a[1] != 200]
    assert not failures, failures[:5]
    old = {a[2] for a in load.answers if a[0] < reindex_started}
    assert len(old) == 1, old
    # Every answer is the old version's or the new one's; a second after each swap (requests in
    # flight during it may still carry the previous version) all answers are the new live one's.
    assert len({a[2] for a in load.answers}) == 2
    new = {a[2] for a in load.since(swapped + 1.0) if a[0] < rollback_started}
    assert len(new) == 1 and new != old, new
    back = {a[2] for a in load.since(rolled + 1.0)}
    assert back == old
