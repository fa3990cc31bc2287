"""The MLflow model registry: registered model ``visearch-<category>``, its ``champion`` alias, rejected marks.

Every registry version is an MLflow model (a pyfunc, see ``visearch.mlflow_model``) logged from
a run, and carries the visearch model version (content hash) as a tag, so the champion maps to
``models/<category>/<version>/`` in the object store. Everything goes through one
``MlflowClient`` (no fluent global state), so the pipeline steps, which run in separate
processes, and in-process callers share the same code.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from visearch.errors import TrackingError, TrackingUnavailableError
from visearch.settings import Settings
from visearch.tracking.connection import open_client, server_url, unreachable
from visearch.tracking.naming import CHAMPION, REJECTED_TAG, VERSION_TAG, model_name
from visearch.tracking.runs import RunTracker

# Where an MLflow pyfunc model keeps the files it was saved with (fixed by mlflow.pyfunc).
PYFUNC_ARTIFACTS = "artifacts"


@dataclass(frozen=True)
class Champion:
    """The registered model version that holds the ``champion`` alias."""

    registry_version: str
    model_version: str
    run_id: str | None
    source: str
    model_id: str | None = None


class Tracker(RunTracker):
    """All MLflow calls of visearch, over one ``MlflowClient``: runs (:class:`RunTracker`) and the registry."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracker:
        """MLflow at ``settings.tracking_uri``; artifacts under the data home unless a server stores them.

        A server that does not answer raises TrackingUnavailableError here, before any work (see
        :func:`visearch.tracking.connection.open_client`).
        """
        client, artifact_root = open_client(settings)
        return cls(client, artifact_root=artifact_root)

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

    def prune_versions(self, category: str, keep: int, *, in_use: Collection[str] = ()) -> list[str]:
        """Delete the category's registry versions older than the newest ``keep``; returns those deleted.

        Never deleted, whatever their age: the champion, a version whose visearch model version is in
        ``in_use`` (a kept index version serves it: a rollback moves the champion back to it), and a
        version a rollback marked rejected (the mark keeps the gate from promoting those weights again).
        """
        from mlflow.exceptions import MlflowException

        name = model_name(category)
        try:
            found = self.client.search_model_versions(f"name='{name}'")
        except MlflowException:
            return []
        champion = self.champion(category)
        deleted = []
        for version in sorted(found, key=lambda v: int(v.version), reverse=True)[max(keep, 0) :]:
            number = str(version.version)
            if (
                (champion and number == champion.registry_version)
                or CHAMPION in (version.aliases or [])
                or version.tags.get(VERSION_TAG) in in_use
                or REJECTED_TAG in version.tags
            ):
                continue
            self.client.delete_model_version(name, number)
            deleted.append(number)
        return sorted(deleted, key=int)

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
