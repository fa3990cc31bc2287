"""Real engine servers on loopback for the end-to-end tests (and the tiers that also need one).

A moto S3 server (plain or TLS, restartable), a self-signed certificate for 127.0.0.1, and an
``mlflow server``. Each is a real process on a free port, stopped when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from tests.helpers import free_port, need, stop_server
from visearch.settings import Settings

# --- S3 (a moto server) -------------------------------------------------------------------------
REGION = "us-east-1"  # moto's default; the minio client must not probe for it
ACCESS, SECRET = "visearch-test-access", "visearch-test-secret-value"


def moto_executable() -> Path:
    exe = Path(sys.executable).parent / "moto_server"
    need(exe.exists(), "moto_server is not installed (dev extra moto[server])")
    return exe


@contextmanager
def moto_server(
    log_dir: Path, *, cert: Path | None = None, key: Path | None = None, port: int | None = None
) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1:<port, default a free one> (TLS with ``cert``/``key``); yields ``host:port``."""
    port = port or free_port()
    tls = ["-c", str(cert), "-k", str(key)] if cert and key else []
    log = (log_dir / f"moto-{port}.log").open("ab")  # appended: a restart on the same port keeps the log
    proc = subprocess.Popen(
        [str(moto_executable()), "-H", "127.0.0.1", "-p", str(port), *tls], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {(log_dir / f'moto-{port}.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("moto_server did not listen within 30 s") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        stop_server(proc, timeout=10)
        log.close()


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


def s3_settings(endpoint: str, home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "visearch_home": home,
        "minio_host": endpoint,
        "minio_access_key": ACCESS,
        "minio_secret_key": SECRET,
        "minio_secure": False,
        "minio_region": REGION,
        "minio_bucket_name": f"vs-{uuid.uuid4().hex[:12]}",
        "minio_main_path": "team/visearch",
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def raw_client(endpoint: str) -> Minio:
    return Minio(endpoint, access_key=ACCESS, secret_key=SECRET, secure=False, region=REGION)


def upload_objects(source: Path, store: Any) -> int:
    """Every object of a local store folder into ``store`` (what a restarted, empty S3 server needs)."""
    from visearch.storage import LocalStore

    keys = list(LocalStore(source).list(""))
    for key in keys:
        store.put_file(key, source / key)
    return len(keys)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made here: TLS without any network."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --- an MLflow tracking server ------------------------------------------------------------------------
@contextmanager
def mlflow_server(
    log_dir: Path, backend: str, artifacts: str, *, env: dict[str, str] | None = None, app: str | None = None
) -> Iterator[str]:
    """`mlflow server` on a free loopback port (artifacts served through it); yields its URL once healthy.

    Args:
        log_dir: Where its log goes (and its working folder).
        backend: ``--backend-store-uri`` (a sqlite file or Postgres).
        artifacts: ``--artifacts-destination`` (a folder URI or s3://...).
        env: The server's environment (default: this process's, without MLFLOW_* variables).
        app: ``--app-name``, e.g. ``basic-auth``.
    """
    mlflow = Path(sys.executable).parent / "mlflow"
    need(mlflow.exists(), "mlflow is not installed")
    port = free_port()
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", artifacts]
    command += ["--app-name", app] if app else []
    server_env = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = log_dir / "mlflow-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=server_env, cwd=log_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # `mlflow server` on sqlite answers /health after ~16 s on 2 cores; more under load.
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
