"""What a long-running server (the BentoML service and its Gradio UI) needs from the library.

The engine a server holds (opened lazily, reopened after a failure, ready only while the index and
the object store answer a probe), the mapping of any exception to an HTTP status and message
shared by REST and UI, the checks on uploads, and where and as what a stored image is served. This module imports neither bentoml nor gradio:
the service and the UI import it.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from visearch.catalogue_api import CATCH_UP_SECONDS, LiveCatalogues, bounded
from visearch.categories import load_registry
from visearch.errors import EngineUnavailableError, ImageTooLargeError, VisearchError
from visearch.index import open_index
from visearch.load_once import LoadOnce
from visearch.search import SearchEngine
from visearch.search_options import check_batch
from visearch.settings import Settings
from visearch.storage import make_store

logger = logging.getLogger(__name__)
T = TypeVar("T")

# /readyz answers from a result this young, so probes (and clients polling readiness) cannot
# hammer the engines; a change of state shows within this time.
READY_TTL_SECONDS = 1.5
# An engine that does not answer a trivial call within this time counts as down (Kubernetes'
# default probe timeout is 1 s; set timeoutSeconds above this one to see the reason instead).
PROBE_TIMEOUT_SECONDS = 3.0
# How often a request may look at the registry file for changes (a stat call).
REGISTRY_CHECK_SECONDS = 1.0


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
    """The HTTP status for an exception: its own for visearch errors, 503 for engine clients, else 500."""
    if isinstance(exc, VisearchError):
        return exc.status
    return 503 if isinstance(exc, _unavailable_types()) else 500


def error_payload(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and JSON body ``{"error": message, "status": code}``; never a traceback."""
    status = http_status(exc)
    if status == 500:
        logger.exception("unexpected error while answering a request", exc_info=exc)
        message = "internal error; the server log has the details"
    elif status == 503 and not isinstance(exc, VisearchError):
        logger.warning("engine unavailable: %s", exc)
        message = f"{engine_of(exc)} unavailable ({type(exc).__name__}); retry shortly"
    else:
        message = str(exc)
    return status, {"error": message, "status": status}


def engine_of(exc: BaseException) -> str:
    """Which engine a client exception comes from, for the message of a 503."""
    module = type(exc).__module__
    if module.startswith("qdrant_client"):
        return "the index (Qdrant server)"
    if module.startswith(("minio", "urllib3")):  # qdrant-client speaks httpx: urllib3 is the store's
        return "the object store"
    return "a search engine"


def probe_engines(engine: SearchEngine) -> str | None:
    """None if the index and the object store answer one cheap call each, else which one fails and why.

    Both calls go through probe clients with short timeouts (2 s, no retry), so a hung engine is
    named here, within the readiness timeout.
    """
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("index", engine.index.backend.ping),
        ("object store", engine.store.ping),
    )
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not ready", with its reason
            reason = str(exc) if isinstance(exc, VisearchError) else f"{type(exc).__name__}: {exc}"
            return f"{name} unavailable: {reason}"
    return None


def read_upload(path: Path, max_bytes: int) -> bytes:
    """Bytes of an uploaded file, refusing oversized ones before reading them."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageTooLargeError(f"upload too large: {size} bytes (limit {max_bytes})")
    return path.read_bytes()


def read_uploads(paths: Sequence[Path], *, max_bytes: int, max_count: int) -> list[bytes]:
    """Bytes of a request's uploaded files: too many are refused before any is read, each as :func:`read_upload`.

    Raises:
        InvalidQueryError: no file, or more than ``max_count``.
        ImageTooLargeError: a file larger than ``max_bytes``.
    """
    check_batch(len(paths), max_count)
    return [read_upload(path, max_bytes) for path in paths]


def image_url(category: str, point_id: str) -> str:
    """Where the service serves a stored image (relative to the service root)."""
    return f"/images/{category}/{point_id}"


def media_type(name: str) -> str:
    """The Content-Type of a stored file, from its name (``application/octet-stream`` when unknown)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def stored_image(engine: SearchEngine, category: str, point_id: str) -> tuple[bytes, str]:
    """A stored image of the live index (what ``image_url`` serves): its bytes and media type."""
    data, payload = engine.image(category, point_id)
    return data, media_type(str(payload.get("image_key", "")))


class Runtime:
    """The search engine a server process holds for its lifetime.

    Opening needs the registry, the object store and the index client; the server keeps them open.
    Calls run concurrently and no lock is held across engine I/O, so a request stuck on an engine
    (until its client's timeout: ``Settings.engine_deadline``) holds up no other request. Two
    things are serialised, both short: opening the engine (once; callers meanwhile wait for that
    open and share its outcome) and a model's forward pass (see ``SearchEngine``). A failed open is
    retried on the next call, and the clients reconnect by themselves, so the server recovers once
    an engine is back. ``ready()`` probes the engines (in a thread, with a timeout, cached briefly):
    an engine that went down after start makes the server not ready, and ``last_error`` says which.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        opener: Callable[[Settings], SearchEngine] | None = None,
        probe: Callable[[SearchEngine], str | None] = probe_engines,
        ready_ttl: float = READY_TTL_SECONDS,
    ) -> None:
        self.settings = settings
        self._opener = opener or open_engine
        self._probe = probe
        self._ready_ttl = ready_ttl
        self._engine: LoadOnce[None, SearchEngine] = LoadOnce()
        self._ready_lock = threading.Lock()  # guards the fields below; never held while probing
        self._prober: ThreadPoolExecutor | None = None
        self._probing: Future[str | None] | None = None
        self._ready: bool | None = None
        self._ready_at = 0.0
        self.last_error: str | None = None
        self._registry_checked = 0.0
        self._registry_seen: tuple[int, int, int] | None = None
        self.catalogues = LiveCatalogues()  # the living catalogue's writes (REST), one per category

    def engine(self) -> SearchEngine:
        """The open engine, opened on first use (EngineUnavailableError while an engine is down)."""
        return self._engine.get(None, self._open)

    def _open(self) -> SearchEngine:
        try:
            engine = self._opener(self.settings)
        except Exception as exc:
            if http_status(exc) != 503:  # a bug, not an outage: let it surface
                raise
            self.last_error = str(exc)
            raise EngineUnavailableError(f"search engine not available: {exc}") from exc
        self.last_error = None
        return engine

    def run(self, call: Callable[[SearchEngine], T]) -> T:
        """Run ``call`` with the engine (concurrently with other calls)."""
        engine = self.engine()
        self._follow_registry(engine)
        return call(engine)

    def query(self, category: str, call: Callable[[SearchEngine], T]) -> T:
        """Run ``call`` for a registry category: an unknown one is refused before ``call`` judges anything.

        A request naming an unknown category gets its 404 first, whatever else is wrong with it
        (an option out of range, an upload too large).

        Raises:
            UnknownCategoryError: ``category`` is not in the registry.
        """

        def checked(engine: SearchEngine) -> T:
            engine.registry.get(category)
            return call(engine)

        return self.run(checked)

    def catch_up(self, seconds: float = CATCH_UP_SECONDS) -> bool:
        """At start: complete every catalogue write a crash left between its record and its index write.

        Bounded: after ``seconds`` (a slow store) the server goes on and the catch-up finishes in the
        background; each category's next write catches up anyway. True if it finished in time.
        """

        def run() -> None:
            try:
                outcome = self.run(self.catalogues.catch_up)
            except VisearchError as exc:
                logger.warning("catalogue catch-up skipped: %s", exc)
                return
            for category, what in outcome.items():
                logger.warning("catalogue catch-up %s: %s", category, what)

        return bounded(run, seconds, "catalogue catch-up")

    def _follow_registry(self, engine: SearchEngine) -> None:
        """Reload the category registry when its file changed (a ConfigMap edit on a cluster).

        Checked at most once a second (one ``stat``). A registry that no longer validates is
        ignored with a warning: the service keeps answering with the last good one.
        """
        path = self.settings.visearch_categories
        now = time.monotonic()
        if path is None or now - self._registry_checked < REGISTRY_CHECK_SECONDS:
            return
        self._registry_checked = now
        try:
            stat = Path(path).stat()
        except OSError:
            return
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._registry_seen is None:
            self._registry_seen = seen
            return
        if seen == self._registry_seen:
            return
        self._registry_seen = seen
        try:
            engine.registry = load_registry(path)
        except VisearchError as exc:
            logger.warning("category registry %s changed but cannot be used; keeping the previous one: %s", path, exc)
            return
        logger.warning("category registry reloaded from %s: %s", path, ", ".join(engine.registry.names()))

    def ready(self) -> bool:
        """True if the engine opens and its index and object store answer (the answer is cached ``ready_ttl`` s)."""
        with self._ready_lock:
            if self._ready is not None and time.monotonic() - self._ready_at < self._ready_ttl:
                return self._ready
            if self._prober is None:
                self._prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visearch-probe")
            # A probe still running (an engine that hangs until its client's timeout) is waited for
            # again rather than queued behind: a new probe starts only after it returns, so readiness
            # comes back as soon as the engine answers, not after a backlog of hung probes.
            if self._probing is None or self._probing.done():
                self._probing = self._prober.submit(self._check)
            probing = self._probing
        # In a thread with a timeout, outside the lock: a hung engine must not hang /readyz.
        try:
            problem = probing.result(timeout=PROBE_TIMEOUT_SECONDS)
        except FutureTimeout:
            problem = f"the engines did not answer within {PROBE_TIMEOUT_SECONDS:g} s"
        ready = problem is None
        with self._ready_lock:
            if ready != self._ready:
                if ready:
                    logger.info("visearch is ready")
                else:
                    logger.warning("visearch is not ready: %s", problem)
            self._ready, self._ready_at, self.last_error = ready, time.monotonic(), problem
        return ready

    def _check(self) -> str | None:
        try:
            engine = self.engine()
        except EngineUnavailableError as exc:
            return str(exc)
        return self._probe(engine)

    def close(self) -> None:
        """Close the engine and stop the readiness prober."""
        engine = self._engine.pop(None)
        if engine is not None:
            engine.close()
        self.catalogues.close()
        with self._ready_lock:
            prober, self._prober, self._probing = self._prober, None, None
        if prober is not None:
            prober.shutdown(wait=False, cancel_futures=True)


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
