"""The server-side pieces without a server: error → HTTP mapping, the runtime's readiness and
recovery, upload limits, the launch command and the UI's logic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from qdrant_client.http.exceptions import ResponseHandlingException

from visearch.cli.serve import serve_command
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
from visearch.runtime import Runtime, check_batch, error_payload, http_status, read_upload
from visearch.search import SearchEngine
from visearch.settings import Settings


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
    with pytest.raises(InvalidQueryError):
        check_batch(0, 16)
    with pytest.raises(InvalidQueryError):
        check_batch(17, 16)


def test_serve_command_runs_bentoml_on_the_service_module() -> None:
    command = serve_command(port=3123, host="127.0.0.1")
    assert "serve" in command and "serving.service:Visearch" in command
    assert command[command.index("--port") + 1] == "3123"
    # The service is an installed package: bentoml imports it by name, from any working directory.
    assert importlib.util.find_spec("serving.service") is not None


def test_ui_builds_from_the_registry_and_reports_bad_uploads(home: Settings, tmp_path: Path) -> None:
    gradio = pytest.importorskip("gradio")
    from ui.app import build_ui, message_for, query_from_upload

    runtime = Runtime(home)
    try:
        blocks = build_ui(runtime)
        assert isinstance(blocks, gradio.Blocks)
        labels = [getattr(block, "value", None) for block in blocks.blocks.values()]
        assert "Tiny test category" in labels and "Find similar images" in labels
        junk = tmp_path / "junk.png"
        junk.write_bytes(b"GIF89a but not really")
        with pytest.raises(InvalidImageError) as caught:
            query_from_upload(runtime, str(junk))
        assert "not a supported image" in message_for(caught.value)
    finally:
        runtime.close()


def test_ui_shows_a_broken_registry_instead_of_crashing(tmp_path: Path) -> None:
    gradio = pytest.importorskip("gradio")
    from ui.app import build_ui

    bad = tmp_path / "categories.yaml"
    bad.write_text("categories: [", encoding="utf-8")
    settings = Settings(visearch_home=tmp_path / "home", visearch_categories=bad, _env_file=None)
    blocks = build_ui(Runtime(settings))
    texts = " ".join(str(getattr(block, "value", "")) for block in blocks.blocks.values())
    assert isinstance(blocks, gradio.Blocks) and "not valid YAML" in texts
