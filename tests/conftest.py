"""Shared fixtures: isolated data homes, a tiny real-image category, an indexed home, real servers.

Everything runs on real engines: the embedded Qdrant engine (qdrant-edge), SQLite MLflow, a local object store, real
PNG images from the bundled Fashion-MNIST subset, real (very short) training. Shared helpers live in
``tests/helpers.py``, those of one tier beside its tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import Moto, moto_server
from tests.helpers import TINY, make_home
from tests.service.server import running_service
from visearch.categories import Registry, load_registry
from visearch.settings import Settings
from visearch.storage import LocalStore


def pytest_configure(config: pytest.Config) -> None:
    # qdrant-client checks a server's version in a background thread and warns when none answers
    # (tests with a Qdrant server that is down); the thread may finish during whichever test runs next.
    config.addinivalue_line("filterwarnings", "ignore:Failed to obtain server version:UserWarning")


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Settings for an empty-but-for-data home (tiny dataset in the store)."""
    return make_home(tmp_path / "home")


@pytest.fixture
def registry(home: Settings) -> Registry:
    return load_registry(home.visearch_categories)


@pytest.fixture
def store(home: Settings) -> LocalStore:
    return LocalStore(home.objects_dir)


@pytest.fixture(scope="session")
def indexed_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A home where `tiny` went through preprocess → train → evaluate → embed → upsert (in process).

    Session-scoped and read-only for its users: tests that change the index make their own home.
    """
    from visearch.stages.in_process import run_in_process

    settings = make_home(tmp_path_factory.mktemp("indexed") / "home")
    registry = load_registry(settings.visearch_categories)
    run_in_process(settings, LocalStore(settings.objects_dir), registry.get(TINY), show_progress=False)
    yield settings


@pytest.fixture(scope="module")
def server_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TMPDIR of the module's service process: the system temp dir it would write to."""
    return tmp_path_factory.mktemp("server-tmpdir")


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's service process writes its stdout and stderr (access log included)."""
    return tmp_path_factory.mktemp("service") / "server.log"


@pytest.fixture(scope="module")
def served(
    indexed_home: Settings, server_tmpdir: Path, server_log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real service (`bentoml serve`) on the indexed home: its URL and process, one per test module."""
    with running_service(indexed_home, server_log, {"TMPDIR": str(server_tmpdir)}) as (url, process):
        yield url, process


@pytest.fixture(scope="module")
def server(served: tuple[str, subprocess.Popen[bytes]]) -> str:
    """The URL of the real service on the indexed home."""
    return served[0]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server for the whole session (tests use buckets of their own): ``host:port``."""
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    """A moto S3 server of this test only, which the test may stop and start again."""
    server = Moto(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
