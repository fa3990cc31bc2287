"""The connection to MLflow: probing, request bounds, credentials, and MLflow's errors mapped to visearch's.

Against real HTTP: a closed port (no server), and a small server that answers every request as a
server with authentication does (401 or 403 with MLflow's error body), recording what it was sent.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from visearch.errors import EngineNotConfiguredError, TrackingAuthError, TrackingUnavailableError
from visearch.settings import Settings
from visearch.tracking import Tracker, check_reachable, open_client, server_url

# Every variable the connection hands to MLflow's client; restored after each test.
MLFLOW_ENV = [
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
]
ANSWERS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MLFLOW_ENV:
        monkeypatch.setenv(name, "")  # recorded, so what the connection writes is undone after the test
        monkeypatch.delenv(name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Refusing(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and MLflow's error body; records the Authorization headers."""

    status = 401
    seen: list[str | None] = []

    def answer(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error_code": ANSWERS[self.status], "message": "no"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args: object) -> None:
        pass


Served = tuple[str, type[Refusing], ThreadingHTTPServer]


@pytest.fixture
def refusing() -> Iterator[Served]:
    handler = type("Handler", (Refusing,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler, server
    finally:
        server.shutdown()
        server.server_close()


def server_settings(tmp_path: Path, uri: str, **more: object) -> Settings:
    return Settings(visearch_home=tmp_path, mlflow_tracking_uri=uri, engine_retries=0, **more, _env_file=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://alice:secret@mlflow:5000/", "http://mlflow:5000"),
        ("https://[::1]:8443/base/", "https://[::1]:8443/base"),
        ("sqlite:///tmp/mlflow.db", None),
        ("databricks", None),
    ],
)
def test_server_url_hides_credentials_and_skips_other_stores(uri: str, shown: str | None) -> None:
    assert server_url(uri) == shown


def test_a_local_store_keeps_its_artifacts_in_the_home(tmp_path: Path) -> None:
    client, root = open_client(Settings(visearch_home=tmp_path, _env_file=None))
    assert root == (tmp_path / "mlartifacts").as_uri()
    assert client.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert not any(os.environ.get(name) for name in MLFLOW_ENV)  # nothing to bound: no HTTP
    with pytest.raises(EngineNotConfiguredError, match="MLFLOW_TRACKING_URI"):
        open_client(Settings(visearch_home=tmp_path, visearch_require_engines=True, _env_file=None))


def test_a_server_that_does_not_answer_stops_before_any_work(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TrackingUnavailableError, match="is unreachable"):
        check_reachable(settings)
    with pytest.raises(TrackingUnavailableError, match="is unreachable"):
        Tracker.from_settings(settings)
    check_reachable(Settings(visearch_home=tmp_path, _env_file=None))  # a SQLite store is no server: no probe


def test_a_server_gone_after_opening_is_unavailable_not_absent(tmp_path: Path, refusing: Served) -> None:
    url, _, server = refusing
    tracker = Tracker.from_settings(server_settings(tmp_path, url, engine_read_timeout=2.5))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # whole seconds, rounded up
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "0"
    server.shutdown()
    server.server_close()
    with pytest.raises(TrackingUnavailableError, match="did not answer"):
        tracker.champion("cat")  # not "no champion yet": a server that is down is no empty registry


def test_no_credentials_name_the_variables_to_set(tmp_path: Path, refusing: Served) -> None:
    url, handler, _ = refusing
    tracker = Tracker.from_settings(server_settings(tmp_path, url))
    with pytest.raises(TrackingAuthError, match="requires authentication .*MLFLOW_TRACKING_USERNAME"):
        tracker.start_run("cat")
    assert handler.seen[-1] is None


def test_credentials_from_the_settings_reach_the_server(tmp_path: Path, refusing: Served) -> None:
    url, handler, _ = refusing
    tracker = Tracker.from_settings(
        server_settings(tmp_path, url, mlflow_tracking_username="alice", mlflow_tracking_password="s3cret")
    )
    with pytest.raises(TrackingAuthError, match="refused the credentials of user 'alice'"):
        tracker.start_run("cat")
    assert handler.seen[-1] == "Basic " + base64.b64encode(b"alice:s3cret").decode()

    handler.status = 403
    with pytest.raises(TrackingAuthError, match="denied user 'alice' this operation .*EDIT"):
        tracker.start_run("cat")
