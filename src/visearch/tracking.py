"""MLflow adapter: one experiment per category, runs, the registered model and its ``champion`` alias.

Everything goes through one ``MlflowClient`` (no fluent global state), so the pipeline steps,
which run in separate processes, and in-process callers share the same code. Registered model
``visearch-<category>``; every model version carries the visearch model version (content hash)
as a tag, so the champion maps to ``models/<category>/<version>/`` in the object store.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from visearch.errors import TrackingError, TrackingUnavailableError
from visearch.settings import Settings

CHAMPION = "champion"
VERSION_TAG = "visearch.model_version"
CANDIDATE_TAG = "visearch.candidate"
REJECTED_TAG = "visearch.rolled_back"
# How long a step waits for an MLflow server to answer before it stops. MLflow's own client
# retries a refused connection 7 times with exponential backoff (minutes); a step should say
# "MLflow is down" in seconds instead.
REACH_TIMEOUT_SECONDS = 5.0


def check_reachable(uri: str, *, timeout: float = REACH_TIMEOUT_SECONDS) -> None:
    """Raise TrackingUnavailableError unless the MLflow server at an http(s) ``uri`` answers.

    Any HTTP answer counts (a 401 or 404 is MLflow's to report); only no answer at all is "down".
    Other URIs (sqlite, file, databricks) are not servers this can reach, and are not checked.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))  # no credentials in messages
    health = urlunsplit((parts.scheme, netloc, f"{parts.path.rstrip('/')}/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=timeout):  # noqa: S310 - http(s) only, checked above
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailableError(
            f"MLflow tracking server {shown} is unreachable ({type(reason).__name__}: {reason}); "
            "start it or fix MLFLOW_TRACKING_URI"
        ) from exc


def model_name(category: str) -> str:
    """The registered model of a category."""
    return f"visearch-{category}"


def experiment_name(category: str) -> str:
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

        A server is checked first (TrackingUnavailableError within seconds if it does not answer),
        so a step stops before any work rather than after minutes of MLflow's retries.
        """
        from mlflow import MlflowClient

        uri = settings.tracking_uri
        check_reachable(uri)
        # A client-side database has no artifact store of its own: MLflow would default to ./mlruns
        # in whatever directory the step happens to run in.
        local = uri.startswith(("sqlite:", "file:", "postgresql:", "mysql:")) or "://" not in uri
        root = (settings.home / "mlartifacts").as_uri() if local else None
        return cls(MlflowClient(tracking_uri=uri, registry_uri=uri), artifact_root=root)

    # --- runs ------------------------------------------------------------------------------
    def experiment_id(self, category: str) -> str:
        name = experiment_name(category)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = f"{self.artifact_root}/{category}" if self.artifact_root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
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
            raise TrackingError(f"cannot download champion version {champion.registry_version}: {exc}") from exc
        return Path(path)


@dataclass
class TrackedRun:
    """One MLflow run, reopened by id in every step of a pipeline run."""

    tracker: Tracker
    run_id: str

    @property
    def client(self) -> Any:
        return self.tracker.client

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        # MLflow refuses to change a logged param; a resumed step logs the same values again.
        new = [Param(k, _param_text(v)) for k, v in params.items() if k not in logged]
        for lo in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[lo : lo + 100])

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.client.log_metric(self.run_id, key, float(value), step=step)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for lo in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[lo : lo + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_files(self, paths: list[Path], artifact_path: str) -> None:
        """Several files into one artifact folder of the run (e.g. a model's files)."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
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
