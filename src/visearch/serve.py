"""What the BentoML service and the Gradio UI need from the library besides search itself.

The engine a long-running server holds (opened lazily, ready only once the registry and the index
open, reopened after a failure), the mapping of errors to HTTP statuses shared by REST and UI, and
``serve_forever``, which runs ``bentoml serve`` on ``serving/service.py``. This module imports
neither bentoml nor gradio: the service imports it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from visearch.categories import load_registry
from visearch.errors import (
    ConfigError,
    ConflictError,
    ForbiddenError,
    ImageTooLargeError,
    IndexBusyError,
    InvalidImageError,
    InvalidQueryError,
    NotFoundError,
    UnauthorizedError,
    UnknownCategoryError,
    VisearchError,
)
from visearch.index import open_index
from visearch.search import SearchEngine, SearchResult
from visearch.settings import Settings
from visearch.storage import make_store

logger = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_TARGET = "serving.service:Visearch"


class ServiceUnavailableError(VisearchError):
    """The registry, the index or the object store cannot be used right now (HTTP 503)."""


def _unavailable_types() -> tuple[type[BaseException], ...]:
    """Exceptions of the engines' clients that mean "engine down", not "bad request"."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    types: list[type[BaseException]] = [ConnectionError, TimeoutError, ResponseHandlingException, UnexpectedResponse]
    try:
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        types += [S3Error, HTTPError]
    except ImportError:  # pragma: no cover - minio is a core dependency
        pass
    return tuple(types)


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception: 4xx for what the caller can fix, 503 for engines, else 500."""
    if isinstance(exc, ImageTooLargeError):
        return 413
    if isinstance(exc, InvalidImageError | InvalidQueryError):
        return 400
    if isinstance(exc, UnknownCategoryError | NotFoundError):
        return 404
    if isinstance(exc, UnauthorizedError):
        return 401
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ServiceUnavailableError | IndexBusyError | ConfigError):
        return 503
    if isinstance(exc, VisearchError):
        return 400  # e.g. an invalid object key: the request named something that cannot exist
    if isinstance(exc, _unavailable_types()):
        return 503
    return 500


def error_payload(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and JSON body ``{"error": message, "status": code}``; never a traceback."""
    status = http_status(exc)
    if status == 500:
        logger.exception("unexpected error while answering a request", exc_info=exc)
        message = "internal error; the server log has the details"
    elif status == 503 and not isinstance(exc, VisearchError):
        logger.warning("engine unavailable: %s", exc)
        message = f"search engine unavailable ({type(exc).__name__}); retry shortly"
    else:
        message = str(exc)
    return status, {"error": message, "status": status}


def read_upload(path: Path, max_bytes: int) -> bytes:
    """Bytes of an uploaded file, refusing oversized ones before reading them."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageTooLargeError(f"upload too large: {size} bytes (limit {max_bytes})")
    return path.read_bytes()


def check_batch(count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise InvalidQueryError(f"a batch holds 1 to {limit} images, got {count}")


def image_url(category: str, point_id: str) -> str:
    """Where the service serves a stored image (relative to the service root)."""
    return f"/images/{category}/{point_id}"


def result_dict(category: str, result: SearchResult) -> dict[str, Any]:
    """A search result as the REST API returns it (adds the image URL)."""
    return {**result.to_dict(), "image_url": image_url(category, result.id)}


class Runtime:
    """The search engine a server process holds for its lifetime.

    Opening needs the registry and the index; embedded Qdrant admits one process per folder, so
    the server keeps its client open. Calls are serialised: qdrant-client's local mode is not
    thread-safe, and ONNX Runtime already uses every core for one batch. A failed open is retried
    on the next call, so the server recovers once the engine is back.
    """

    def __init__(self, settings: Settings, *, opener: Callable[[Settings], SearchEngine] | None = None) -> None:
        self.settings = settings
        self._opener = opener or open_engine
        self._engine: SearchEngine | None = None
        self._lock = threading.RLock()
        self.last_error: str | None = None

    def engine(self) -> SearchEngine:
        with self._lock:
            if self._engine is None:
                try:
                    self._engine = self._opener(self.settings)
                except Exception as exc:
                    if not isinstance(exc, (ConfigError, IndexBusyError, *_unavailable_types())):
                        raise
                    self.last_error = str(exc)
                    raise ServiceUnavailableError(f"search engine not available: {exc}") from exc
                self.last_error = None
            return self._engine

    def run(self, call: Callable[[SearchEngine], T]) -> T:
        """Run ``call`` with the engine, one call at a time."""
        with self._lock:
            return call(self.engine())

    def ready(self) -> bool:
        try:
            self.engine()
        except ServiceUnavailableError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


def keep_temp_files_in_home(settings: Settings) -> Path:
    """Make this process write temporary files (uploads included) under ``<home>/tmp``.

    BentoML spools uploads through :mod:`tempfile` and Gradio caches them in GRADIO_TEMP_DIR;
    both would otherwise land in the system's /tmp. Call before gradio is imported.
    """
    temp = settings.home / "tmp"
    (temp / "gradio").mkdir(parents=True, exist_ok=True, mode=0o700)
    tempfile.tempdir = str(temp)
    os.environ["GRADIO_TEMP_DIR"] = str(temp / "gradio")
    return temp


def open_engine(settings: Settings) -> SearchEngine:
    """Registry + object store + index client → engine (raises ConfigError / IndexBusyError)."""
    registry = load_registry(settings.visearch_categories)
    return SearchEngine(settings, registry, make_store(settings), open_index(settings))


# --- running the server -------------------------------------------------------------------------
def service_dir() -> Path:
    """The folder holding ``serving/`` and ``ui/`` (VISEARCH_SERVICE_DIR, the cwd, or the source tree)."""
    candidates = [os.environ.get("VISEARCH_SERVICE_DIR"), Path.cwd(), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if candidate and (Path(candidate) / "serving" / "service.py").is_file():
            return Path(candidate)
    raise ConfigError("serving/service.py not found: run from the project folder or set VISEARCH_SERVICE_DIR")


def serve_command(*, port: int, host: str) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    launcher = [str(bentoml)] if bentoml.is_file() else [sys.executable, "-m", "bentoml"]
    return [*launcher, "serve", SERVICE_TARGET, "--port", str(port), "--host", host,
            "--working-dir", str(service_dir())]  # fmt: skip


def serve_env(settings: Settings) -> dict[str, str]:
    """The environment of the server process: this settings' home and registry, no usage tracking."""
    env = dict(os.environ)
    env["VISEARCH_HOME"] = str(settings.home)
    if settings.visearch_categories:
        env["VISEARCH_CATEGORIES"] = str(Path(settings.visearch_categories).resolve())
    env["BENTOML_DO_NOT_TRACK"] = "true"  # no internet here; and no telemetry by default anyway
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes] | None = None, *, timeout: float = 120) -> bool:
    """Poll ``url``/readyz until it answers 200; False on timeout or if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def serve_forever(settings: Settings, *, port: int = 3000, host: str = "127.0.0.1") -> None:
    """Run the service until Ctrl-C, printing its URLs once it is ready."""
    process = subprocess.Popen(serve_command(port=port, host=host), env=serve_env(settings))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    try:
        if wait_ready(url, process):
            print(f"\nvisearch is serving:\n  UI       {url}/ui\n  API docs {url}/docs\n  OpenAPI  {url}/docs.json\n"
                  f"  health   {url}/readyz  {url}/metrics\nCtrl-C stops it.", flush=True)  # fmt: skip
        elif process.poll() is None:
            print(f"the service at {url} is not ready yet; see its log above (/readyz says why)", flush=True)
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    if code not in (0, -15, None):
        raise VisearchError(f"the service exited with code {code}")
