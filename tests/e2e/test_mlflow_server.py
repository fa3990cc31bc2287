"""MLflow as deployed: `mlflow server` on a Postgres backend with artifacts in S3, started here.

Postgres (Debian `postgresql`: initdb/pg_ctl, as the `postgres` user when we are root, because the
server refuses to run as root) and an S3 server (moto) start on free loopback ports in temp
folders; `mlflow server` proxies artifacts to the bucket, as in k8s/base/mlflow.yaml. The pipeline's
tracking (evaluate + gate: metrics, registered candidates, the champion alias) runs against it, and
the champion is loaded back from it. Everything is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import servers
from tests.e2e.servers import ACCESS, REGION, SECRET, moto_server, raw_client
from tests.helpers import TINY, free_port, need, need_module

pytestmark = pytest.mark.slow
PG_USER, PG_PASSWORD, PG_DB = "mlflow", "mlflow-test-pw", "mlflow"


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    need(found is not None, f"{name} not found (Debian package postgresql)")
    return str(found)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway Postgres cluster on 127.0.0.1:<free port>; yields the SQLAlchemy URI of its database."""
    need(sys.platform.startswith("linux"), "Postgres fixture needs Linux")
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    user: str | None = None
    root = Path(tempfile.mkdtemp(prefix="visearch-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # postgres will not run as root: hand the folder to the `postgres` user
        import pwd

        entry = next((account for account in pwd.getpwall() if account.pw_name == "postgres"), None)
        need(entry is not None, "running as root and there is no `postgres` user to run the server")
        assert entry is not None
        user = "postgres"
        os.chown(root, entry.pw_uid, entry.pw_gid)
    run = {"user": user, "capture_output": True, "text": True, "timeout": 120}
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD)
    if user:
        shutil.chown(pwfile, user)
    data, port = root / "data", free_port()
    result = subprocess.run(
        [
            initdb,
            "-D",
            str(data),
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        **run,
    )  # type: ignore[call-overload]
    assert result.returncode == 0, result.stderr
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    result = subprocess.run(
        [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"], **run
    )  # type: ignore[call-overload]
    assert result.returncode == 0, result.stderr + (root / "log").read_text()
    try:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {PG_DB}")
        connection.close()
        yield f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DB}"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], **run)  # type: ignore[call-overload]
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        raw_client(endpoint).make_bucket("mlflow-art")
        yield endpoint


@pytest.fixture(scope="module")
def mlflow_server(postgres: str, s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on Postgres with S3 artifacts (served through it); yields its URL."""
    need_module("psycopg2", "the Postgres driver (psycopg2-binary) is not installed")
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": f"http://{s3}",
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
    }
    with servers.mlflow_server(
        tmp_path_factory.mktemp("mlflow"), postgres, "s3://mlflow-art/mlflow-artifacts", env=env
    ) as url:
        yield url


def test_pipeline_tracking_on_server_postgres_and_s3(
    mlflow_server: str, postgres: str, s3: str, home, registry, store, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from visearch.gate import FROZEN, TUNED
    from visearch.model import load_model, read_spec
    from visearch.settings import Settings
    from visearch.stages.evaluate import evaluate_and_gate
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline
    from visearch.tracking import CHAMPION, Tracker, model_name

    category = registry.get(TINY)
    settings = Settings(
        visearch_home=home.home,
        visearch_categories=home.visearch_categories,
        mlflow_tracking_uri=mlflow_server,
        _env_file=None,
    )
    work = tmp_path / "work"
    run_preprocess(settings, store, category, work / "manifest", show_progress=False)
    # Two real candidate models without training (this test is about tracking, not learning):
    # the frozen trunk at two input sizes. Their versions (content hashes) differ.
    frozen = save_baseline(category.train, work / "baseline")
    tuned = save_baseline(category.train.model_copy(update={"input_size": 40}), work / "tuned")
    assert read_spec(tuned).version != read_spec(frozen).version

    tracker = Tracker.from_settings(settings)
    assert tracker.artifact_root is None  # the server stores artifacts (in S3), not the client
    run = tracker.run(tracker.start_run(TINY))
    with run.failing():
        run.log_params(category.train.model_dump())
        outcome = evaluate_and_gate(
            settings,
            store,
            category,
            work / "manifest",
            {TUNED: tuned, FROZEN: frozen},
            work / "report",
            work / "champion",
            tracker=tracker,
            run=run,
            show_progress=False,
        )
    run.end()

    # A fresh client (another pipeline step, the service) sees the same state through the server.
    again = Tracker.from_settings(settings)
    champion = again.champion(TINY)
    assert champion is not None and outcome.decision.promoted is not None
    assert champion.model_version == outcome.champion_version
    loaded = again.download(champion, tmp_path / "downloaded")
    assert read_spec(loaded).version == outcome.champion_version
    assert load_model(loaded).spec.version == outcome.champion_version
    finished = again.client.get_run(run.run_id)
    assert finished.info.status == "FINISHED" and finished.data.params["epochs"] == str(category.train.epochs)
    assert any(key.endswith("in_domain.mean_average_precision_at_r") for key in finished.data.metrics)
    assert again.client.get_model_version_by_alias(model_name(TINY), CHAMPION).version == champion.registry_version

    # ... and it really lives in Postgres and in the bucket.
    import psycopg2

    dsn = postgres.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run.run_id,))
        assert cursor.fetchone() == (1,)
        cursor.execute("SELECT count(*) FROM registered_models WHERE name = %s", (model_name(TINY),))
        assert cursor.fetchone() == (1,)
    stored = [
        o.object_name for o in raw_client(s3).list_objects("mlflow-art", prefix="mlflow-artifacts/", recursive=True)
    ]
    assert any(name.endswith("/trunk.pth") for name in stored) and any(name.endswith("report.json") for name in stored)
