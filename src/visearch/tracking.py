"""MLflow adapter: one experiment per category, runs, the registered model and its ``champion`` alias.

Everything goes through one ``MlflowClient`` (no fluent global state), so the pipeline steps,
which run in separate processes, and in-process callers share the same code. Registered model
``visearch-<category>``; every model version carries the visearch model version (content hash)
as a tag, so the champion maps to ``models/<category>/<version>/`` in the object store.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from visearch.errors import EngineNotConfiguredError, TrackingError, TrackingUnavailableError
from visearch.settings import Settings

CHAMPION = "champion"
VERSION_TAG = "visearch.model_version"
CANDIDATE_TAG = "visearch.candidate"
REJECTED_TAG = "visearch.rolled_back"


def server_url(uri: str) -> str | None:
    """The http(s) URI of an MLflow server without credentials (for messages), or None for other stores."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_reachable(settings: Settings) -> None:
    """Raise TrackingUnavailableError unless the MLflow server at ``settings.tracking_uri`` answers.

    One request to ``/health``, no retry, within ENGINE_CONNECT_TIMEOUT + ENGINE_READ_TIMEOUT: a
    step that cannot track stops before any work. Any HTTP answer counts (a 401 or 404 is MLflow's
    to report); only no answer at all is "down". Other URIs (sqlite, file, databricks) are not
    servers this can reach, and are not checked.
    """
    shown = server_url(settings.tracking_uri)
    if shown is None:
        return
    timeout = urllib3.Timeout(connect=settings.engine_connect_timeout, read=settings.engine_read_timeout)
    try:
        urllib3.request("GET", f"{shown}/health", timeout=timeout, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise TrackingUnavailableError(
            f"MLflow tracking server {shown} is unreachable ({type(exc).__name__}: {exc}); "
            "start it or fix MLFLOW_TRACKING_URI"
        ) from exc


def bound_mlflow_requests(settings: Settings) -> None:
    """Make MLflow's HTTP client time out and retry as ENGINE_READ_TIMEOUT and ENGINE_RETRIES say.

    MLflow 3.17 has no per-client option: it reads these variables of its own on every request
    (defaults: 120 s and 7 retries with exponential backoff, minutes in all). Retries are immediate,
    as for the other engines: after a timeout the wait already happened.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(math.ceil(settings.engine_read_timeout))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.engine_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"


def unreachable(exc: BaseException) -> BaseException | None:
    """The transport error behind ``exc`` (no answer, a timeout, 5xx after retries), if that is what it is.

    MLflow wraps them in MlflowException ("API request to ... failed"); an error the server
    answered with (a RestException: unknown run, invalid parameter) is not one.
    """
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return current
        if isinstance(current, requests.exceptions.RetryError | urllib3.exceptions.HTTPError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ReachableClient:
    """An ``MlflowClient`` whose calls raise TrackingUnavailableError when the server does not answer.

    Not an MlflowException: callers that read "not found" from one (e.g. no champion yet) must
    not read it from a server that is down.
    """

    def __init__(self, client: Any, shown: str) -> None:
        self._client = client
        self._shown = shown

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                cause = unreachable(exc)
                if cause is None:
                    raise
                raise TrackingUnavailableError(
                    f"MLflow tracking server {self._shown} did not answer ({type(cause).__name__}); retry later"
                ) from exc

        return call


def model_name(category: str) -> str:
    """The registered model of a category."""
    return f"visearch-{category}"


def experiment_name(category: str) -> str:
    """The MLflow experiment of a category."""
    return f"visearch-{category}"


def git_commit() -> str | None:
    """The commit the code runs from: ``VISEARCH_GIT_COMMIT`` (baked into images) or ``git rev-parse``."""
    if os.environ.get("VISEARCH_GIT_COMMIT"):
        return os.environ["VISEARCH_GIT_COMMIT"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


@dataclass(frozen=True)
class Champion:
    """The registered model version that holds the ``champion`` alias."""

    registry_version: str
    model_version: str
    run_id: str | None
    source: str


class Tracker:
    """All MLflow calls of visearch, over one ``MlflowClient``."""

    def __init__(self, client: Any, *, artifact_root: str | None = None) -> None:
        self.client = client
        self.artifact_root = artifact_root

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracker:
        """MLflow at ``settings.tracking_uri``; artifacts under the data home unless a server stores them.

        A server is checked first (TrackingUnavailableError within ENGINE_CONNECT_TIMEOUT +
        ENGINE_READ_TIMEOUT if it does not answer), so a step stops before any work; every later
        call is bounded by ENGINE_READ_TIMEOUT and ENGINE_RETRIES (see ``bound_mlflow_requests``).
        """
        from mlflow import MlflowClient

        if not settings.mlflow_tracking_uri and settings.require_engines:
            raise EngineNotConfiguredError("MLFLOW_TRACKING_URI")
        uri = settings.tracking_uri
        shown = server_url(uri)
        if shown is not None:
            check_reachable(settings)
            bound_mlflow_requests(settings)
            return cls(ReachableClient(MlflowClient(tracking_uri=uri, registry_uri=uri), shown))
        # A client-side database has no artifact store of its own: MLflow would default to ./mlruns
        # in whatever directory the step happens to run in.
        local = uri.startswith(("sqlite:", "file:", "postgresql:", "mysql:")) or "://" not in uri
        root = (settings.home / "mlartifacts").as_uri() if local else None
        return cls(MlflowClient(tracking_uri=uri, registry_uri=uri), artifact_root=root)

    # --- runs ------------------------------------------------------------------------------
    def experiment_id(self, category: str) -> str:
        """The id of the category's experiment, created (with its artifact location) if it is missing."""
        name = experiment_name(category)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = f"{self.artifact_root}/{category}" if self.artifact_root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except TrackingUnavailableError:
            raise
        except Exception:  # noqa: BLE001 - a concurrent step may have created it first
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def start_run(self, category: str, *, run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
        """A new run in the category's experiment; returns its id (steps reopen it by id)."""
        all_tags = {"visearch.category": category, **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        name = run_name or f"{category}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        run = self.client.create_run(self.experiment_id(category), run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def run(self, run_id: str) -> TrackedRun:
        """A handle on the existing run ``run_id``."""
        return TrackedRun(self, run_id)

    # --- registry --------------------------------------------------------------------------
    def champion(self, category: str) -> Champion | None:
        """The current champion of the category, or None before the first promotion."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(model_name(category), CHAMPION)
        except MlflowException:
            return None
        return Champion(
            str(version.version), str(version.tags.get(VERSION_TAG, "")), version.run_id, str(version.source)
        )

    def find_version(self, category: str, model_version: str) -> str | None:
        """The registry version that already holds this visearch model (content hash), if any."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(
                f"name='{model_name(category)}' and tags.`{VERSION_TAG}`='{model_version}'"
            )
        except MlflowException:
            return None
        return str(min(int(v.version) for v in found)) if found else None

    def register(
        self, category: str, run_id: str, artifact_path: str, model_version: str, tags: dict[str, str] | None = None
    ) -> str:
        """Register the run's model folder (once per content hash: re-runs create no duplicates)."""
        from mlflow.exceptions import MlflowException

        existing = self.find_version(category, model_version)
        if existing:
            return existing
        name = model_name(category)
        try:
            self.client.create_registered_model(name, description=f"visearch embedding model of {category!r}")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise TrackingError(f"cannot create registered model {name}: {exc}") from exc
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags={VERSION_TAG: model_version, **(tags or {})}
        )
        return str(version.version)

    def reject(self, category: str, model_version: str, reason: str) -> None:
        """Mark a registered model as rolled back from: the gate never promotes it again."""
        registry_version = self.find_version(category, model_version)
        if registry_version is not None:
            self.client.set_model_version_tag(model_name(category), registry_version, REJECTED_TAG, reason)

    def rejected(self, category: str) -> frozenset[str]:
        """The visearch model versions of this category that a rollback took out of service."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name='{model_name(category)}'")
        except MlflowException:
            return frozenset()
        return frozenset(str(v.tags.get(VERSION_TAG, "")) for v in found if REJECTED_TAG in v.tags)

    def set_champion(self, category: str, registry_version: str) -> None:
        """Move the ``champion`` alias of the category's registered model to ``registry_version``."""
        self.client.set_registered_model_alias(model_name(category), CHAMPION, registry_version)

    def download(self, champion: Champion, destination: Path) -> Path:
        """The champion's model files (trunk.pth, embedder.pth, meta.json, ...) in ``destination``."""
        import mlflow.artifacts

        destination.mkdir(parents=True, exist_ok=True)
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=champion.source, dst_path=str(destination), tracking_uri=self.client.tracking_uri
            )
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for missing artifacts
            cause = unreachable(exc)
            if cause is not None:
                raise TrackingUnavailableError(
                    f"MLflow did not answer while downloading champion version {champion.registry_version} "
                    f"({type(cause).__name__}); retry later"
                ) from exc
            raise TrackingError(f"cannot download champion version {champion.registry_version}: {exc}") from exc
        return Path(path)


@dataclass
class TrackedRun:
    """One MLflow run, reopened by id in every step of a pipeline run."""

    tracker: Tracker
    run_id: str

    @property
    def client(self) -> Any:
        """The tracker's MLflow client."""
        return self.tracker.client

    def log_params(self, params: dict[str, Any]) -> None:
        """Log the params the run does not have yet (MLflow refuses to change a logged one)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        # MLflow refuses to change a logged param; a resumed step logs the same values again.
        new = [Param(k, _param_text(v)) for k, v in params.items() if k not in logged]
        for lo in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[lo : lo + 100])

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log one metric value."""
        self.client.log_metric(self.run_id, key, float(value), step=step)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log several metrics at once, all with the same timestamp and step."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for lo in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[lo : lo + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run (values as text)."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log one file as an artifact of the run, optionally into ``artifact_path``."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_files(self, paths: list[Path], artifact_path: str) -> None:
        """Several files into one artifact folder of the run (e.g. a model's files)."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run terminated with ``status`` (FINISHED, FAILED, ...)."""
        self.client.set_terminated(self.run_id, status=status)

    @contextmanager
    def failing(self) -> Iterator[TrackedRun]:
        """Mark the run FAILED when the block raises (a step that dies leaves no RUNNING run behind)."""
        try:
            yield self
        except BaseException:
            self.end("FAILED")
            raise


def _param_text(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return text[:6000]
