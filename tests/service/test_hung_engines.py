"""Engines that accept a connection and then answer late or never (a real outage often looks so).

Every engine client is bounded (ENGINE_CONNECT_TIMEOUT, ENGINE_READ_TIMEOUT, ENGINE_RETRIES): a
call to an engine that (a) never answers or (b) answers after more than the read timeout ends
within ``Settings.engine_deadline`` with an error naming the engine, 503 in the service; (c) one
that answers slowly but within the timeout is simply slow. While one request is stuck, the service
answers every request that does not need the stuck engine; /readyz turns 503 within the probe
timeout and back to 200 when the engine answers again; a pipeline step stops with one line.

The engines sit behind ``FakeEngine`` (tests/helpers.py), a loopback server that reads each
request and answers it late or never: in front of moto's real S3 server, and in front of small
responders that answer the Qdrant and MLflow REST calls made here with those servers' JSON (no
Qdrant or MLflow server installs here; the S3 path uses a real one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.e2e.servers import moto_server
from tests.helpers import TINY, env_for, make_home, stop_server
from tests.service.fake_engine import HANG, FakeEngine
from tests.service.server import start_server
from visearch.cli.serve import wait_ready
from visearch.errors import EngineUnavailableError, TrackingUnavailableError
from visearch.index import CollectionVersion, open_index
from visearch.runtime import PROBE_TIMEOUT_SECONDS, READY_TTL_SECONDS, Runtime
from visearch.settings import Settings
from visearch.storage import LocalStore, ObjectStore, make_store
from visearch.tracking import Tracker

# Small timeouts keep the tests short; the behaviour is the same at the defaults (3 s, 10 s, 1).
CONNECT, READ, RETRIES = 1.0, 2.0, 1
# Slack on top of a deadline for what is not the engine's wait: thread scheduling, Python and the
# client libraries on 2 shared cores (measured well under 1 s). Without the bounds a stuck call
# lasts minutes (minio: 5 min x 6 attempts; MLflow: 120 s x 8; qdrant-client's was 30 s).
MARGIN = 3.0
# A CLI step also imports torch, kfp and friends before it reaches an engine: 5-20 s here.
CLI_MARGIN = 60.0
SLOW = READ / 4  # "slow but within": every answer this late, a quarter of the read timeout
LATE = READ * 3  # "answers after the deadline": every answer this late, past every read timeout
ACCESS, SECRET, REGION = "visearch-test-access", "visearch-test-secret-value", "us-east-1"

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


# --- helpers ------------------------------------------------------------------------------------
def bounded(settings: Settings, *, read: float = READ) -> Settings:
    return settings.model_copy(
        update={"engine_connect_timeout": CONNECT, "engine_read_timeout": read, "engine_retries": RETRIES}
    )


def on_s3(settings: Settings, endpoint: str) -> Settings:
    """``settings`` with its objects in a fresh bucket of the S3 server at ``endpoint``."""
    return settings.model_copy(
        update={
            "minio_host": endpoint,
            "minio_access_key": SecretStr(ACCESS),  # model_copy does not validate: the field's type
            "minio_secret_key": SecretStr(SECRET),
            "minio_secure": False,
            "minio_region": REGION,
            "minio_bucket_name": f"vs-{uuid.uuid4().hex[:12]}",
            "minio_main_path": "team/visearch",
        }
    )


def upload_objects(source: Path, store: ObjectStore) -> int:
    keys = list(LocalStore(source).list(""))
    for key in keys:
        store.put_file(key, source / key)
    return len(keys)


def timed(call: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    """``call()``'s result or exception, and how long it took."""
    started = time.monotonic()
    try:
        return call(), None, time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - the caller asserts on it
        return None, exc, time.monotonic() - started


def wait_until(check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``check()`` held (polled every 0.1 s), or None if it did not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return None


def json_answer(status: int, body: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


def qdrant_responder(method: str, path: str) -> tuple[int, bytes, str]:
    """A Qdrant server with no collections, for the calls made here (its REST JSON shapes)."""
    route = path.split("?")[0].rstrip("/")
    ok = {"status": "ok", "time": 0.0}
    if route == "":
        return json_answer(200, {"title": "qdrant - vector search engine", "version": "1.20.0"})
    if route == "/collections":
        return json_answer(200, {"result": {"collections": []}, **ok})
    if route == "/aliases":
        return json_answer(200, {"result": {"aliases": []}, **ok})
    return json_answer(404, {"status": {"error": f"Not found: {route}"}, "time": 0.0})


def mlflow_responder(method: str, path: str) -> tuple[int, bytes, str]:
    """An MLflow server that holds the experiment ``visearch-tiny`` (id 7) and no registered model."""
    route = path.split("?")[0]
    if route == "/health":
        return 200, b"OK", "text/plain"
    if route.endswith("/mlflow/experiments/get-by-name"):
        experiment = {"experiment_id": "7", "name": f"visearch-{TINY}", "lifecycle_stage": "active"}
        return json_answer(200, {"experiment": experiment})
    return json_answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"nothing at {route}"})


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[FakeEngine]:
    """moto's S3 server behind a FakeEngine (answering at once until a test says otherwise)."""
    with moto_server(tmp_path) as endpoint, FakeEngine(upstream=endpoint) as engine:
        yield engine


def visearch_cli(settings: Settings, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
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


def copy_home(indexed: Settings, target: Path) -> Settings:
    shutil.copytree(indexed.home, target, ignore=shutil.ignore_patterns("cache", "tmp"))
    return Settings(visearch_home=target, visearch_categories=target / "categories.yaml", _env_file=None)


# --- each client: hung, late, slow ----------------------------------------------------------------
@pytest.mark.parametrize("delay", [HANG, LATE], ids=["never-answers", "answers-late"])
def test_object_store_calls_end_within_the_deadline(s3: FakeEngine, tmp_path: Path, delay: float) -> None:
    settings = bounded(on_s3(Settings(visearch_home=tmp_path / "home", _env_file=None), s3.address))
    store = make_store(settings)
    store.put_bytes("datasets/x/meta.csv", b"file,class\n")
    s3.set(delay)
    for call in (lambda: store.get_bytes("datasets/x/meta.csv"), lambda: list(store.list("datasets"))):
        _, error, elapsed = timed(call)
        assert isinstance(error, EngineUnavailableError) and error.status == 503, error
        assert "object store unreachable" in str(error) and "timed out" in str(error), error
        assert elapsed < settings.engine_deadline + MARGIN, elapsed
    _, error, elapsed = timed(store.ping)  # the readiness probe: its own short timeout, no retry
    assert isinstance(error, EngineUnavailableError) and elapsed < PROBE_TIMEOUT_SECONDS + MARGIN, (error, elapsed)
    assert s3.delayed() >= 1 + (RETRIES + 1) * 2


def test_object_store_answers_slowly_within_the_deadline(s3: FakeEngine, tmp_path: Path) -> None:
    settings = bounded(on_s3(Settings(visearch_home=tmp_path / "home", _env_file=None), s3.address))
    store = make_store(settings)
    store.put_bytes("datasets/x/meta.csv", b"file,class\n")
    s3.set(SLOW)
    assert store.get_bytes("datasets/x/meta.csv") == b"file,class\n"
    assert list(store.list("datasets")) == ["datasets/x/meta.csv"]
    store.put_bytes("datasets/x/other.csv", b"1")
    assert store.exists("datasets/x/other.csv")
    store.ping()
    assert s3.delayed() >= 5  # every one of them was late


@pytest.mark.parametrize("delay", [HANG, LATE], ids=["never-answers", "answers-late"])
def test_qdrant_server_calls_end_within_the_deadline(tmp_path: Path, delay: float) -> None:
    with FakeEngine(respond=qdrant_responder) as qdrant:
        settings = bounded(Settings(visearch_home=tmp_path, qdrant_url=qdrant.url, _env_file=None))
        index = open_index(settings)
        try:
            assert index.versions(TINY) == [] and index.live(TINY) is None  # answering
            qdrant.set(delay)
            for call in (lambda: index.versions(TINY), lambda: index.live(TINY)):
                _, error, elapsed = timed(call)
                assert isinstance(error, EngineUnavailableError) and error.status == 503, error
                assert "Qdrant server" in str(error) and "timed out" in str(error), error
                assert elapsed < settings.engine_deadline + MARGIN, elapsed
            _, error, elapsed = timed(index.backend.ping)  # the readiness probe: its own short timeout
            assert isinstance(error, EngineUnavailableError) and elapsed < PROBE_TIMEOUT_SECONDS + MARGIN, error
        finally:
            index.close()


def test_qdrant_server_answers_slowly_within_the_deadline(tmp_path: Path) -> None:
    with FakeEngine(respond=qdrant_responder) as qdrant:
        qdrant.set(SLOW)
        index = open_index(bounded(Settings(visearch_home=tmp_path, qdrant_url=qdrant.url, _env_file=None)))
        try:
            assert index.versions(TINY) == [] and index.live(TINY) is None
        finally:
            index.close()
        assert qdrant.delayed() >= 2


@pytest.mark.parametrize("delay", [HANG, LATE], ids=["never-answers", "answers-late"])
def test_mlflow_calls_end_within_the_deadline(tmp_path: Path, delay: float) -> None:
    """Down before a step (the health check) and in the middle of one (a client call)."""
    with FakeEngine(respond=mlflow_responder) as mlflow:
        settings = bounded(Settings(visearch_home=tmp_path, mlflow_tracking_uri=mlflow.url, _env_file=None))
        mlflow.set(delay, only="/api/")  # /health answers: the step starts, then MLflow stops answering
        tracker = Tracker.from_settings(settings)
        for call in (lambda: tracker.champion(TINY), lambda: tracker.experiment_id(TINY)):
            # Not None ("no champion yet"): a server that does not answer is not an empty registry.
            result, error, elapsed = timed(call)
            assert isinstance(error, TrackingUnavailableError) and error.status == 503, (result, error)
            assert "MLflow tracking server" in str(error) and "did not answer" in str(error), error
            assert elapsed < settings.engine_deadline + MARGIN, elapsed

        mlflow.set(delay)  # the health check too
        _, error, elapsed = timed(lambda: Tracker.from_settings(settings))
        assert isinstance(error, TrackingUnavailableError) and "unreachable" in str(error), error
        assert elapsed < CONNECT + READ + MARGIN, elapsed


def test_mlflow_answers_slowly_within_the_deadline(tmp_path: Path) -> None:
    with FakeEngine(respond=mlflow_responder) as mlflow:
        mlflow.set(SLOW)
        tracker = Tracker.from_settings(
            bounded(Settings(visearch_home=tmp_path, mlflow_tracking_uri=mlflow.url, _env_file=None))
        )
        assert tracker.experiment_id(TINY) == "7"
        assert tracker.champion(TINY) is None  # the server's answer: no registered model
        assert mlflow.delayed() >= 3


# --- the runtime: one stuck request holds up no other ---------------------------------------------
def test_a_request_stuck_on_the_store_holds_up_no_other(indexed_home: Settings, s3: FakeEngine, tmp_path: Path) -> None:
    """In process, the calls the service makes: a stuck object store delays only what needs it."""
    copy = copy_home(indexed_home, tmp_path / "home")
    settings = bounded(on_s3(copy, s3.address), read=4.0)  # a stuck call lasts 8 s: room to overlap
    assert upload_objects(copy.objects_dir, make_store(settings)) > 40
    shutil.rmtree(copy.objects_dir)  # nothing may come from the local folder
    query = next(LocalStore(indexed_home.objects_dir).list(f"datasets/{TINY}/images"))
    data = LocalStore(indexed_home.objects_dir).get_bytes(query)
    runtime = Runtime(settings, ready_ttl=0)
    pool = ThreadPoolExecutor(4)
    try:
        assert runtime.ready(), runtime.last_error
        point = runtime.run(lambda e: e.examples(TINY, 1))[0].id
        assert runtime.run(lambda e: e.search(TINY, data, k=3).results)  # the live model is loaded
        live = runtime.run(lambda e: e.live_version(TINY))
        other = CollectionVersion(TINY, live.created, "0123456789ab", live.data_hash)

        s3.set(HANG)
        started = time.monotonic()
        stuck: list[Future[Any]] = [
            pool.submit(runtime.run, lambda e: e.image(TINY, point)),  # needs the store
            pool.submit(runtime.run, lambda e: e.model_for(TINY, other)),  # a model load from the store
        ]
        assert wait_until(lambda: s3.delayed() >= 2, timeout=10) is not None  # both reached the store
        # Meanwhile, everything that does not need the store answers:
        assert len(runtime.run(lambda e: e.search(TINY, data, k=3).results)) == 3  # loaded model + index
        assert len(runtime.run(lambda e: e.similar(TINY, point, k=3).results)) == 3
        assert any(info.name == TINY and info.indexed for info in runtime.run(lambda e: e.categories()))
        assert not runtime.ready() and "object store unavailable" in (runtime.last_error or "")
        assert not any(future.done() for future in stuck), "a stuck call ended before the others answered"

        for future in stuck:
            with pytest.raises(EngineUnavailableError, match="object store unreachable"):
                future.result(timeout=60)
        assert time.monotonic() - started < settings.engine_deadline + MARGIN

        s3.set(0)
        assert runtime.ready(), runtime.last_error
        assert runtime.run(lambda e: e.image(TINY, point))[0]
    finally:
        pool.shutdown(wait=True)
        runtime.close()


# --- the service over HTTP --------------------------------------------------------------------------
def post_search(client: httpx.Client, query: bytes) -> httpx.Response:
    return client.post("/search", data={"category": TINY, "k": 3}, files={"image": ("q.png", query)})


@pytest.mark.slow
def test_service_with_a_hung_object_store(indexed_home: Settings, s3: FakeEngine, tmp_path: Path) -> None:
    """The store stops answering under a running service, before and after the model is loaded."""
    copy = copy_home(indexed_home, tmp_path / "home")
    settings = bounded(on_s3(copy, s3.address), read=4.0)  # a stuck call lasts 8 s: room to overlap
    assert upload_objects(copy.objects_dir, make_store(settings)) > 40
    shutil.rmtree(copy.objects_dir)
    query = next((indexed_home.objects_dir / "datasets" / TINY / "images").rglob("*.png")).read_bytes()
    deadline = settings.engine_deadline + MARGIN

    log = tmp_path / "server.log"
    process, url = start_server(settings, log)
    pool = ThreadPoolExecutor(4)
    try:
        assert wait_ready(url, process, timeout=180), log.read_text(errors="replace")[-4000:]
        with httpx.Client(base_url=url, timeout=120) as client:
            point = client.get(f"/categories/{TINY}/examples", params={"limit": 1}).json()[0]["id"]

            # 1. Before the first search: the model load is stuck on the store.
            s3.set(HANG)
            started = time.monotonic()
            stuck = [pool.submit(post_search, client, query) for _ in range(2)]  # the 2nd waits for the same load
            assert wait_until(lambda: s3.delayed() >= 1, timeout=10) is not None
            assert client.post("/search_by_id", json={"category": TINY, "point_id": point}).status_code == 200
            assert client.get("/categories").status_code == 200
            assert client.get("/livez").status_code == 200
            assert not any(future.done() for future in stuck), "a stuck request ended before the others answered"
            to_503 = wait_until(lambda: client.get("/readyz").status_code == 503, timeout=30)
            assert to_503 is not None and to_503 < PROBE_TIMEOUT_SECONDS + READY_TTL_SECONDS + MARGIN, to_503
            for future in stuck:
                response = future.result(timeout=120)
                assert response.status_code == 503 and "object store unreachable" in response.json()["error"]
            stuck_for = time.monotonic() - started
            assert stuck_for < deadline, stuck_for

            assert client.get("/readyz").status_code == 503  # a fresh probe: still down
            s3.set(0)
            to_200 = wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
            assert to_200 is not None and to_200 < settings.engine_deadline + READY_TTL_SECONDS + MARGIN, to_200
            assert len(post_search(client, query).json()["results"]) == 3  # the model loads now

            # 2. The model is loaded: only what needs the store waits.
            s3.set(HANG)
            started = time.monotonic()
            image = pool.submit(client.get, f"/images/{TINY}/{point}")
            assert wait_until(lambda: s3.delayed() >= 1, timeout=10) is not None
            search = post_search(client, query)
            assert search.status_code == 200 and len(search.json()["results"]) == 3, search.text
            assert not image.done(), "the stuck /images ended before /search answered"
            response = image.result(timeout=120)
            assert response.status_code == 503 and "object store unreachable" in response.json()["error"]
            assert time.monotonic() - started < deadline

            s3.set(0)
            assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60) is not None
            assert client.get(f"/images/{TINY}/{point}").status_code == 200
        print(
            f"\nhung object store: stuck requests 503 after {stuck_for:.1f} s, /readyz 503 after {to_503:.1f} s, 200 {to_200:.1f} s after recovery"
        )
        assert "object store unavailable" in log.read_text(errors="replace")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_server(process)


@pytest.mark.slow
def test_service_with_a_hung_qdrant_server(home: Settings, tmp_path: Path) -> None:
    """The Qdrant server stops answering, then answers again: 503 naming it, not ready, then recovered."""
    with FakeEngine(respond=qdrant_responder) as qdrant:
        settings = bounded(home.model_copy(update={"qdrant_url": qdrant.url}), read=5.0)
        log = tmp_path / "server.log"
        process, url = start_server(settings, log)
        pool = ThreadPoolExecutor(4)
        try:
            assert wait_ready(url, process, timeout=180), log.read_text(errors="replace")[-4000:]
            with httpx.Client(base_url=url, timeout=120) as client:
                assert client.get("/categories").status_code == 200

                qdrant.set(HANG)
                started = time.monotonic()
                stuck = [pool.submit(client.get, "/categories") for _ in range(2)]
                assert wait_until(lambda: qdrant.delayed() >= 2, timeout=10) is not None
                assert client.get("/livez").status_code == 200  # no engine needed
                assert client.get("/docs.json").status_code == 200
                assert not any(future.done() for future in stuck), "a stuck request ended before the others"
                to_503 = wait_until(lambda: client.get("/readyz").status_code == 503, timeout=30)
                assert to_503 is not None and to_503 < PROBE_TIMEOUT_SECONDS + READY_TTL_SECONDS + MARGIN, to_503
                for future in stuck:
                    response = future.result(timeout=120)
                    assert response.status_code == 503 and "Qdrant server" in response.json()["error"], response.text
                stuck_for = time.monotonic() - started
                assert stuck_for < settings.engine_deadline + MARGIN, stuck_for

                assert client.get("/readyz").status_code == 503  # a fresh probe: still down
                qdrant.set(0)
                to_200 = wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
                assert to_200 is not None and to_200 < settings.engine_deadline + READY_TTL_SECONDS + MARGIN
                assert client.get("/categories").status_code == 200
            print(
                f"\nhung Qdrant: stuck requests 503 after {stuck_for:.1f} s, /readyz 503 after {to_503:.1f} s, 200 {to_200:.1f} s after recovery"
            )
            assert "index unavailable" in log.read_text(errors="replace")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_server(process)


# --- pipeline steps --------------------------------------------------------------------------------
@pytest.mark.slow
def test_steps_stop_with_one_line_when_the_store_hangs(s3: FakeEngine, tmp_path: Path) -> None:
    """The bucket answers (the step starts), its objects do not: `preprocess` stops with one line."""
    local = make_home(tmp_path / "home")
    settings = bounded(on_s3(local, s3.address))
    upload_objects(local.objects_dir, make_store(settings))
    shutil.rmtree(local.objects_dir)
    s3.set(HANG, only="/team/visearch/")  # object keys; the bucket check still answers
    result, elapsed = visearch_cli(settings, "preprocess", "--category", TINY, timeout=600)
    assert "object store unreachable" in one_error_line(result)
    assert s3.delayed() >= 1
    assert elapsed < settings.engine_deadline + CLI_MARGIN, elapsed


@pytest.mark.slow
def test_steps_stop_with_one_line_when_qdrant_hangs(indexed_home: Settings, tmp_path: Path) -> None:
    copy = copy_home(indexed_home, tmp_path / "home")
    with FakeEngine(respond=qdrant_responder) as qdrant:
        qdrant.set(HANG)
        settings = bounded(copy.model_copy(update={"qdrant_url": qdrant.url}))
        result, elapsed = visearch_cli(settings, "upsert", "--category", TINY, timeout=600)
        assert "Qdrant server" in one_error_line(result)
        assert qdrant.delayed() >= 1
        assert elapsed < settings.engine_deadline + CLI_MARGIN, elapsed


@pytest.mark.slow
def test_steps_stop_with_one_line_when_mlflow_hangs(home: Settings) -> None:
    with FakeEngine(respond=mlflow_responder) as mlflow:
        mlflow.set(HANG)
        settings = bounded(home.model_copy(update={"mlflow_tracking_uri": mlflow.url}))
        result, elapsed = visearch_cli(settings, "pipeline", "run", "--categories", TINY, timeout=600)
        assert "MLflow tracking server" in one_error_line(result) and "unreachable" in result.stderr
        assert mlflow.delayed() >= 1
        assert elapsed < settings.engine_deadline + CLI_MARGIN, elapsed
