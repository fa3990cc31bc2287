"""The service's runtime without a server: error → HTTP mapping, readiness and recovery (also when
the object store or a Qdrant server goes down), upload limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from qdrant_client.http.exceptions import ResponseHandlingException

from tests.e2e.servers import Moto, s3_settings
from tests.helpers import TINY, closed_url, make_home
from visearch.errors import (
    ConfigError,
    DataError,
    EngineUnavailableError,
    ImageTooLargeError,
    IndexBusyError,
    InvalidImageError,
    InvalidQueryError,
    NotFoundError,
    UnknownCategoryError,
)
from visearch.runtime import (
    PROBE_TIMEOUT_SECONDS,
    READY_TTL_SECONDS,
    Runtime,
    error_payload,
    http_status,
    media_type,
    read_upload,
    read_uploads,
)
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.storage import make_store


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidImageError("bad"), 400),
        (ImageTooLargeError("big"), 413),
        (InvalidQueryError("k"), 400),
        (UnknownCategoryError("cat"), 404),
        (NotFoundError("id"), 404),
        (IndexBusyError("busy"), 503),
        (ConfigError("registry"), 503),
        (EngineUnavailableError("down"), 503),
        (DataError("other visearch error"), 400),
        (ResponseHandlingException(ConnectionError("refused")), 503),
        (ConnectionError("refused"), 503),
        (RuntimeError("bug"), 500),
    ],
)
def test_errors_map_to_statuses(exc: Exception, status: int) -> None:
    assert http_status(exc) == status
    code, body = error_payload(exc)
    assert code == status and body["status"] == status and body["error"]


def test_unexpected_errors_hide_their_details() -> None:
    _, body = error_payload(RuntimeError("secret path /etc/shadow"))
    assert "shadow" not in body["error"] and "internal error" in body["error"]


def test_runtime_is_not_ready_while_the_engine_cannot_open_and_recovers(home: Settings) -> None:
    attempts: list[int] = []

    class FakeEngine:
        def close(self) -> None:
            attempts.append(-1)

    def opener(settings: Settings) -> SearchEngine:
        attempts.append(1)
        if len(attempts) < 3:
            raise IndexBusyError("the embedded index is in use by another process")
        return FakeEngine()  # type: ignore[return-value]

    runtime = Runtime(home, opener=opener, probe=lambda engine: None, ready_ttl=0)
    assert not runtime.ready() and "another process" in (runtime.last_error or "")
    with pytest.raises(EngineUnavailableError, match="another process"):
        runtime.run(lambda engine: engine)
    assert runtime.ready() and runtime.last_error is None
    assert isinstance(runtime.run(lambda engine: engine), FakeEngine)
    runtime.close()
    assert attempts[-1] == -1


def test_uploads_over_the_limit_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(ImageTooLargeError, match="2048 bytes"):
        read_upload(path, 1024)
    assert read_upload(path, 4096) == b"\0" * 2048
    assert read_uploads([path, path], max_bytes=4096, max_count=2) == [b"\0" * 2048] * 2
    with pytest.raises(ImageTooLargeError):
        read_uploads([path], max_bytes=1024, max_count=2)
    # The count is judged before any file is read: a missing third file is never opened.
    with pytest.raises(InvalidQueryError, match="a batch holds 1 to 2 images, got 3"):
        read_uploads([path, path, tmp_path / "missing.png"], max_bytes=4096, max_count=2)
    with pytest.raises(InvalidQueryError, match="got 0"):
        read_uploads([], max_bytes=4096, max_count=2)


def test_media_type_follows_the_file_name() -> None:
    assert media_type("datasets/tiny/images/bag-1.png") == "image/png"
    assert media_type("a/b.JPG") == "image/jpeg"
    assert media_type("photo.webp") == "image/webp"
    assert media_type("datasets/tiny/images/no-extension") == "application/octet-stream"
    assert media_type("") == "application/octet-stream"


def test_a_query_names_a_registry_category_before_anything_is_judged(home: Settings) -> None:
    runtime = Runtime(home)
    calls: list[str] = []
    try:
        with pytest.raises(UnknownCategoryError):
            runtime.query("no-such-category", lambda engine: calls.append("called"))
        assert calls == []
        assert runtime.query(TINY, lambda engine: engine.registry.get(TINY).name) == TINY
    finally:
        runtime.close()


# --- readiness follows the engines (a moto S3 server stopped and started, a closed port) ---------
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
        # The reason itself shows the probe answered before the readiness deadline (else it would say
        # "did not answer within"); the bound is that deadline, which a kubelet's probe relies on,
        # with room for a loaded machine.
        assert time.monotonic() - started < PROBE_TIMEOUT_SECONDS + 3
        moto.start()
        assert runtime.ready() and cached.ready(), runtime.last_error  # the store creates its bucket
        moto.stop()

        started = time.monotonic()
        assert not runtime.ready()
        assert time.monotonic() - started < PROBE_TIMEOUT_SECONDS + 3  # as above: readiness never waits longer
        assert "object store unavailable" in (runtime.last_error or "")  # the probe's own answer, not the deadline's
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


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
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
