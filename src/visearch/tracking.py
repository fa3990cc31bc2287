"""MLflow adapter: one experiment per category, runs, the registered model and its ``champion`` alias.

Everything goes through one ``MlflowClient`` (no fluent global state), so the pipeline steps,
which run in separate processes, and in-process callers share the same code. Registered model
``visearch-<category>``: every version is an MLflow model (a pyfunc, see ``visearch.mlflow_model``)
logged from the run, and carries the visearch model version (content hash) as a tag, so the
champion maps to ``models/<category>/<version>/`` in the object store.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from visearch.errors import EngineNotConfiguredError, TrackingAuthError, TrackingError, TrackingUnavailableError
from visearch.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
VERSION_TAG = "visearch.model_version"
CANDIDATE_TAG = "visearch.candidate"
REJECTED_TAG = "visearch.rolled_back"
# The experiment tag MLflow's UI reads to pick the view: training runs, not the GenAI (traces) view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Where an MLflow pyfunc model keeps the files it was saved with (fixed by mlflow.pyfunc).
PYFUNC_ARTIFACTS = "artifacts"


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


def send_credentials(settings: Settings) -> None:
    """Hand MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD to MLflow's client (it reads its env).

    Set from the environment they are there already; this carries the values of a ``.env`` file.
    """
    if settings.mlflow_tracking_username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_tracking_username
    if settings.mlflow_tracking_password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_tracking_password.get_secret_value()


def refused(exc: BaseException, shown: str) -> TrackingAuthError | None:
    """A clear error for a server that answered 401 (no or wrong credentials) or 403 (no permission)."""
    status = getattr(exc, "get_http_status_code", lambda: None)()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401 and not user:
        return TrackingAuthError(
            f"MLflow tracking server {shown} requires authentication (HTTP 401): set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 401:
        return TrackingAuthError(
            f"MLflow tracking server {shown} refused the credentials of user {user!r} (HTTP 401): "
            "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 403:
        return TrackingAuthError(
            f"MLflow tracking server {shown} denied user {user!r} this operation (HTTP 403): "
            "grant the user EDIT (or MANAGE) permission, or use an admin account"
        )
    return None


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
    not read it from a server that is down. A 401 or 403 becomes a TrackingAuthError that says
    which credentials to set.
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
                    denied = refused(exc, self._shown)
                    if denied is not None:
                        raise denied from exc
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
    model_id: str | None = None


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
            send_credentials(settings)
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
            if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before the tag was set
                self._set_kind(str(experiment.experiment_id))
            return str(experiment.experiment_id)
        location = f"{self.artifact_root}/{category}" if self.artifact_root else None
        try:
            return str(
                self.client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            )
        except TrackingUnavailableError:
            raise
        except Exception:  # noqa: BLE001 - a concurrent step may have created it first
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def _set_kind(self, experiment_id: str) -> None:
        """Tag an older experiment for the training-runs view; a server that refuses it costs only the view."""
        try:
            self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except (TrackingUnavailableError, TrackingAuthError):
            raise
        except Exception as exc:  # noqa: BLE001 - cosmetic: the run goes on
            log.warning("could not tag experiment %s with %s: %s", experiment_id, EXPERIMENT_KIND_TAG, exc)

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
        source = str(version.source)
        # SQL registry stores keep no model_id column: a logged model's version has it in its source.
        model_id = version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)
        return Champion(str(version.version), str(version.tags.get(VERSION_TAG, "")), version.run_id, source, model_id)

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

    def log_model(self, run_id: str, name: str, model_dir: Path, tags: dict[str, str] | None = None) -> str:
        """Log an MLflow model folder (e.g. ``mlflow_model.save_pyfunc``'s) as a model of the run; its id.

        What ``mlflow.<flavor>.log_model`` does, on this client instead of MLflow's global tracking
        URI: a LoggedModel in the run's experiment, its files, the run's output link, READY.
        """
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        experiment_id = self.client.get_run(run_id).info.experiment_id
        logged = self.client.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=tags)
        mlmodel = model_dir / "MLmodel"
        if mlmodel.is_file():  # the ids of the logged model, as log_model writes them
            described = Model.load(str(mlmodel))
            described.model_id = described.model_uuid = logged.model_id
            described.run_id = run_id
            described.artifact_path = logged.artifact_location
            described.save(str(mlmodel))
        try:
            self.client.log_model_artifacts(logged.model_id, str(model_dir))
        except Exception:
            self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return str(logged.model_id)

    def register(
        self, category: str, run_id: str, model_id: str, model_version: str, tags: dict[str, str] | None = None
    ) -> str:
        """Register a logged model (once per content hash: re-runs create no duplicates)."""
        import json

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
        with self._resolving_models_uris():
            version = self.client.create_model_version(
                name,
                source=f"models:/{model_id}",  # the logged model: what the registry UI links to
                run_id=run_id,
                tags={VERSION_TAG: model_version, **(tags or {})},
                model_id=model_id,
            )
        # The logged model's page links its registry versions (what mlflow.register_model records).
        self.client.set_logged_model_tags(
            model_id, {"mlflow.modelVersions": json.dumps([{"name": name, "version": version.version}])}
        )
        return str(version.version)

    @contextmanager
    def _resolving_models_uris(self) -> Iterator[None]:
        """Let a client-side SQL registry store resolve ``models:/<id>`` on this client's database.

        MLflow 3.17's SQL registry store looks the logged model up with ``MlflowClient()``, i.e. on
        the global tracking URI (a TODO in its code). A server resolves it on its own store.
        """
        if server_url(self.client.tracking_uri) is not None:
            yield
            return
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        with _use_tracking_uri(self.client.tracking_uri):
            yield

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
        """The champion's model files (trunk.pth, embedder.pth, meta.json, model.onnx) in ``destination``.

        A registered pyfunc keeps them under ``artifacts/`` of its logged model; a version
        registered before that (``source`` = a run's artifact folder) holds them at its top level.
        """
        import mlflow.artifacts

        destination.mkdir(parents=True, exist_ok=True)
        try:
            source = champion.source
            if champion.model_id:
                source = self.client.get_logged_model(champion.model_id).artifact_location
            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=str(destination), tracking_uri=self.client.tracking_uri
                )
            )
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for missing artifacts
            cause = unreachable(exc)
            if cause is not None:
                raise TrackingUnavailableError(
                    f"MLflow did not answer while downloading champion version {champion.registry_version} "
                    f"({type(cause).__name__}); retry later"
                ) from exc
            raise TrackingError(f"cannot download champion version {champion.registry_version}: {exc}") from exc
        files = path / PYFUNC_ARTIFACTS
        return files if (files / "meta.json").is_file() else path


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

    def log_dataset(self, frame: Any, *, name: str, digest: str, source: str, context: str = "training") -> None:
        """``frame`` as the run's dataset input (MLflow's Datasets panel): name, digest, source URI, schema."""
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():
            # "source can be interpreted in multiple ways" (two local-file source classes, same
            # meaning) and the integer-column hint meant for model signatures: noise for a manifest.
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(frame, source=source, name=name, digest=digest)
            # The entity MLflow's own ``log_input`` sends (the schema is inferred here); the client takes it.
            entity = dataset._to_mlflow_entity()
        entry = DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        self.client.log_inputs(self.run_id, datasets=[entry])

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
