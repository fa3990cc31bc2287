"""Engines unavailable: the object store (S3), the index (a Qdrant server) or MLflow down at start or
mid-request. The service answers 503 with a message and is not ready, and recovers by itself once
the engine is back; a pipeline step stops in seconds with one clear message and leaves the live
collection as it was.

Real components only: moto's S3 server (stopped, then restarted on the same port), closed loopback
ports for a Qdrant or MLflow server that is down, the real service process and the real CLI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from visearch.categories import load_registry
from visearch.cli.serve import wait_ready
from visearch.errors import EngineUnavailableError, TrackingUnavailableError
from visearch.index import CollectionVersion, open_index
from visearch.loop import run_loop
from visearch.runtime import READY_TTL_SECONDS, Runtime, error_payload, http_status
from visearch.settings import Settings
from visearch.steps import run_upsert
from visearch.storage import LocalStore, ObjectStore, make_store

from .conftest import TINY, env_for, make_home
from .servers import free_port, start_server, stop_server
from .test_storage import moto_server, s3_settings

Check = Callable[[], bool]
# qdrant-client asks a server for its version when it connects, and warns when none answers.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


# --- helpers ------------------------------------------------------------------------------------
def closed_url() -> str:
    """A loopback URL where nothing listens: a server that is down (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def wait_for(check: Check, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def upload_objects(source: Path, store: ObjectStore) -> int:
    """Every object of a local store folder into ``store`` (what a restarted, empty S3 server needs)."""
    keys = list(LocalStore(source).list(""))
    for key in keys:
        store.put_file(key, source / key)
    return len(keys)


def live_state(settings: Settings) -> tuple[CollectionVersion | None, list[CollectionVersion]]:
    """The live collection of TINY and all its versions (what a failed step must leave as it was)."""
    index = open_index(settings)
    try:
        return index.live(TINY), index.versions(TINY)
    finally:
        index.close()


def copy_home(indexed: Settings, target: Path) -> Settings:
    """A private copy of the indexed home (index, objects, work, registry): tests may break it."""
    shutil.copytree(indexed.home, target, ignore=shutil.ignore_patterns("cache", "tmp"))
    return Settings(visearch_home=target, visearch_categories=target / "categories.yaml", _env_file=None)


class Moto:
    """A moto S3 server on a fixed port that a test can stop and start again (in-memory: starts empty)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server: AbstractContextManager[str] | None = None

    def start(self) -> None:
        self._server = moto_server(self.log_dir, port=self.port)
        self._server.__enter__()

    def stop(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    server = Moto(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def visearch_cli(
    settings: Settings, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return result, time.monotonic() - started


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- readiness of the runtime (no server process) ------------------------------------------------
def test_readiness_follows_the_object_store(moto: Moto, tmp_path: Path) -> None:
    """Down at start, up, down mid-run, back empty: readiness follows within one probe, with the reason."""
    local = make_home(tmp_path / "home")
    settings = s3_settings(moto.endpoint, local.home, visearch_categories=local.visearch_categories)
    moto.stop()  # down at start
    runtime = Runtime(settings, ready_ttl=0)
    cached = Runtime(settings)  # the default: an answer is reused for READY_TTL_SECONDS
    try:
        started = time.monotonic()
        assert not runtime.ready() and "object store unreachable" in (runtime.last_error or "")
        assert time.monotonic() - started < 3  # no retries: "down" at once, with the reason
        moto.start()
        assert runtime.ready() and cached.ready(), runtime.last_error  # the store creates its bucket
        moto.stop()

        started = time.monotonic()
        assert not runtime.ready()
        assert time.monotonic() - started < 3  # the probe does not retry like the store's own client
        assert "object store unavailable" in (runtime.last_error or "")
        assert cached.ready()  # cached: a burst of /readyz calls does not reach the engines
        time.sleep(READY_TTL_SECONDS + 0.1)
        assert not cached.ready()
        with pytest.raises(EngineUnavailableError, match="object store unreachable") as caught:
            runtime.run(lambda engine: engine.store.get_bytes(f"datasets/{TINY}/meta.csv"))
        assert http_status(caught.value) == 503

        moto.start()  # an empty server: the bucket is gone until the store recreates it
        assert not runtime.ready() and "does not exist" in (runtime.last_error or "")
        make_store(settings)
        assert runtime.ready() and runtime.last_error is None
    finally:
        runtime.close()
        cached.close()


def test_readiness_notices_a_qdrant_server_that_is_down(home: Settings) -> None:
    settings = home.model_copy(update={"qdrant_url": closed_url()})
    runtime = Runtime(settings, ready_ttl=0)
    try:
        assert not runtime.ready()
        assert (runtime.last_error or "").startswith("index unavailable")
        with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever qdrant-client raises, it maps to 503
            runtime.run(lambda engine: engine.categories())
        status, body = error_payload(caught.value)
        assert status == 503 and "Qdrant" in body["error"], body
    finally:
        runtime.close()


# --- the service over HTTP -----------------------------------------------------------------------
@pytest.mark.slow
def test_service_survives_the_object_store_going_down(indexed_home: Settings, moto: Moto, tmp_path: Path) -> None:
    """S3 goes down under a running service: not ready, 503 where the store is needed; back by itself."""
    copy = copy_home(indexed_home, tmp_path / "home")
    objects = tmp_path / "objects"
    shutil.move(copy.objects_dir, objects)  # nothing may come from a local folder
    settings = s3_settings(moto.endpoint, copy.home, visearch_categories=copy.visearch_categories)
    assert upload_objects(objects, make_store(settings)) > 40
    query = next((objects / "datasets" / TINY / "images").rglob("*.png")).read_bytes()

    log = tmp_path / "server.log"
    process, url = start_server(settings, log)
    try:
        assert wait_ready(url, process, timeout=180), log.read_text(errors="replace")[-4000:]
        with httpx.Client(base_url=url, timeout=60) as client:
            point = client.get(f"/categories/{TINY}/examples", params={"limit": 1}).json()[0]["id"]
            assert client.get(f"/images/{TINY}/{point}").status_code == 200

            moto.stop()  # before the first search: the model is not loaded yet
            assert wait_for(lambda: client.get("/readyz").status_code == 503, timeout=15)
            search = client.post("/search", data={"category": TINY, "k": 3}, files={"image": ("q.png", query)})
            image = client.get(f"/images/{TINY}/{point}")
            for response in (search, image):
                assert response.status_code == 503, response.text
                assert "object store unreachable" in response.json()["error"]
            # What needs only the index still answers.
            assert client.post("/search_by_id", json={"category": TINY, "point_id": point}).status_code == 200
            assert client.get("/categories").status_code == 200
            assert "object store unavailable" in log.read_text(errors="replace")  # the log says which engine

            moto.start()  # a fresh, empty server on the same address: the data is put back
            upload_objects(objects, make_store(settings))
            assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)
            search = client.post("/search", data={"category": TINY, "k": 3}, files={"image": ("q.png", query)})
            assert search.status_code == 200 and len(search.json()["results"]) == 3, search.text
            assert client.get(f"/images/{TINY}/{point}").status_code == 200
    finally:
        stop_server(process)


@pytest.mark.slow
def test_service_with_its_qdrant_server_down(home: Settings, tmp_path: Path) -> None:
    """QDRANT_URL names a server that is down: not ready, 503 with a message; the UI page still loads.

    Recovery is the client's own reconnect (the runtime keeps no state about a failed call), shown
    above for the object store; it cannot be shown here: no Qdrant server installs on this machine.
    """
    settings = home.model_copy(update={"qdrant_url": closed_url()})
    query = next((home.objects_dir / "datasets" / TINY / "images").rglob("*.png")).read_bytes()
    log = tmp_path / "server.log"
    process, url = start_server(settings, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert wait_for(lambda: client.get("/livez").status_code == 200, timeout=180), log.read_text()[-4000:]
            assert client.get("/readyz").status_code == 503
            for response in (
                client.get("/categories"),
                client.post("/search", data={"category": TINY}, files={"image": ("q.png", query)}),
                client.post("/search_by_id", json={"category": TINY, "point_id": "x"}),
            ):
                assert response.status_code == 503, response.text
                assert "Qdrant server" in response.json()["error"]
            assert client.get("/ui/").status_code == 200  # the UI page itself needs only the registry
        assert "index unavailable" in log.read_text(errors="replace")
    finally:
        stop_server(process)


# --- pipeline steps ------------------------------------------------------------------------------
def test_loop_stops_at_once_when_mlflow_is_down(indexed_home: Settings) -> None:
    """Before any work: no training, nothing written, the live collection as it was."""
    settings = indexed_home.model_copy(update={"mlflow_tracking_uri": closed_url()})
    before = live_state(settings)
    assert before[0] is not None
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="MLflow tracking server .* is unreachable"):
        run_loop(
            settings,
            LocalStore(settings.objects_dir),
            load_registry(settings.visearch_categories).get(TINY),
            show_progress=False,
        )
    assert time.monotonic() - started < 10
    assert live_state(settings) == before


@pytest.mark.slow
def test_pipeline_run_stops_with_one_line_when_mlflow_is_down(indexed_home: Settings) -> None:
    settings = indexed_home.model_copy(update={"mlflow_tracking_uri": closed_url()})
    before = live_state(settings)
    result, elapsed = visearch_cli(settings, "pipeline", "run", "--categories", TINY)
    assert "MLflow tracking server" in one_error_line(result) and "unreachable" in result.stderr
    assert elapsed < 60  # the CLI's start-up; not minutes of MLflow's retries
    assert live_state(settings) == before


@pytest.mark.slow
def test_upsert_step_fails_clearly_when_the_object_store_is_down(
    indexed_home: Settings, moto: Moto, tmp_path: Path
) -> None:
    """Down before the step (the CLI) and between steps (in process): one message, live untouched."""
    copy = copy_home(indexed_home, tmp_path / "home")
    before = live_state(copy)
    assert before[0] is not None

    down = s3_settings(closed_url().removeprefix("http://"), copy.home, visearch_categories=copy.visearch_categories)
    result, _ = visearch_cli(down, "upsert", "--category", TINY)
    assert "object store unreachable" in one_error_line(result)
    assert live_state(copy) == before

    # Up when the step built its store, down when it publishes the model: the alias is not touched.
    settings = s3_settings(moto.endpoint, copy.home, visearch_categories=copy.visearch_categories)
    store = make_store(settings)
    moto.stop()
    work = copy.work_dir / TINY
    with pytest.raises(EngineUnavailableError, match="object store unreachable"):
        run_upsert(
            settings,
            store,
            load_registry(copy.visearch_categories).get(TINY),
            work / "manifest",
            work / "champion",
            work / "embeddings",
        )
    assert live_state(copy) == before
