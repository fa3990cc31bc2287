"""MLflow behind authentication, as deployed: `mlflow server --app-name basic-auth` on a loopback port.

A Tracker without credentials (or with wrong ones) stops with an error that names the variables to
set, and never reads "no champion" from a refusal; with MLFLOW_TRACKING_USERNAME/PASSWORD (from
the environment, as on a cluster, or from Settings, as from a `.env` file) it works. The reachability
check counts any HTTP answer, a 401 included, as "up".
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import mlflow_server
from tests.helpers import free_port
from visearch.errors import TrackingAuthError, TrackingUnavailableError
from visearch.model import copy_model
from visearch.settings import Settings
from visearch.tracking import VERSION_TAG, Tracker, check_reachable

ADMIN, PASSWORD = "visearch", "test-admin-password-7f3c"


class Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every request with 401, as an auth proxy in front of MLflow might."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_401_from_health_counts_as_reachable(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        check_reachable(Settings(mlflow_tracking_uri=url, visearch_home=tmp_path, _env_file=None))  # no raise
    finally:
        server.shutdown()
        server.server_close()
    # ... while no answer at all is "down".
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnavailableError, match="unreachable"):
        check_reachable(Settings(mlflow_tracking_uri=closed, visearch_home=tmp_path, _env_file=None))


def need_auth_app() -> None:
    """The auth app needs Flask-WTF (mlflow[auth]; the dev extra pins it): skip without, fail in CI."""
    if importlib.util.find_spec("flask_wtf") is None:
        why = "MLflow's basic-auth app needs Flask-WTF, which is not installed (pip install Flask-WTF==1.3.0)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server --app-name basic-auth` (SQLite stores, local artifacts); yields its URL."""
    need_auth_app()
    root = tmp_path_factory.mktemp("mlflow-auth")
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-secret",
    }
    with mlflow_server(
        root, f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(), env=env, app="basic-auth"
    ) as url:
        yield url


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLflow credentials in the environment (restored afterwards, also those a Tracker sets)."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
@pytest.mark.usefixtures("no_credentials")
def test_without_credentials_the_error_says_what_to_set(auth_server: str, tmp_path: Path) -> None:
    tracker = Tracker.from_settings(Settings(mlflow_tracking_uri=auth_server, visearch_home=tmp_path, _env_file=None))
    with pytest.raises(TrackingAuthError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") as info:
        tracker.start_run("cat")
    assert "401" in str(info.value) and info.value.status == 502
    # A refusal is not "no champion yet": the gate must not promote against a server it cannot read.
    with pytest.raises(TrackingAuthError):
        tracker.champion("cat")


@pytest.mark.slow
@pytest.mark.usefixtures("no_credentials")
def test_wrong_credentials_are_named(auth_server: str, tmp_path: Path) -> None:
    settings = Settings(
        mlflow_tracking_uri=auth_server,
        mlflow_tracking_username=ADMIN,
        mlflow_tracking_password="not-the-password",
        visearch_home=tmp_path,
        _env_file=None,
    )
    with pytest.raises(TrackingAuthError, match=f"refused the credentials of user '{ADMIN}'"):
        Tracker.from_settings(settings).start_run("cat")


@pytest.mark.slow
@pytest.mark.usefixtures("no_credentials")
def test_with_credentials_runs_models_and_the_champion_work(
    auth_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)  # as the Secret sets them on a cluster
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    tracker = Tracker.from_settings(Settings(mlflow_tracking_uri=auth_server, visearch_home=tmp_path, _env_file=None))
    run = tracker.run(tracker.start_run("cat"))
    run.log_params({"epochs": 1})
    model = tmp_path / "model"
    model.mkdir()
    for name in ("trunk.pth", "embedder.pth", "meta.json"):
        (model / name).write_bytes(name.encode())
    copy_model(model, tmp_path / "logged" / "artifacts")  # artifacts go through the server's proxy
    model_id = tracker.log_model(run.run_id, "model", tmp_path / "logged", {VERSION_TAG: "v1"})
    tracker.set_champion("cat", tracker.register("cat", run.run_id, model_id, "v1"))
    run.end()

    champion = tracker.champion("cat")
    assert champion is not None and champion.model_version == "v1"
    files = tracker.download(champion, tmp_path / "download")
    assert sorted(p.name for p in files.iterdir()) == ["embedder.pth", "meta.json", "trunk.pth"]
