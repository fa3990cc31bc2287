"""MLflow runs: one experiment per category, a run started once and reopened by id in every step.

:class:`RunTracker` is the run side of :class:`visearch.tracking.Tracker` (which adds the model
registry); :class:`TrackedRun` logs params, metrics, tags, datasets and files to one run.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visearch.errors import TrackingAuthError, TrackingUnavailableError
from visearch.tracking.naming import (
    CATEGORY_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GIT_COMMIT_TAG,
    experiment_name,
    git_commit,
)

log = logging.getLogger(__name__)


class RunTracker:
    """The categories' experiments and their runs, over one ``MlflowClient``."""

    def __init__(self, client: Any, *, artifact_root: str | None = None) -> None:
        self.client = client
        self.artifact_root = artifact_root

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
        all_tags = {CATEGORY_TAG: category, **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags[GIT_COMMIT_TAG] = commit
        name = run_name or f"{category}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        run = self.client.create_run(self.experiment_id(category), run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def run(self, run_id: str) -> TrackedRun:
        """A handle on the existing run ``run_id``."""
        return TrackedRun(self, run_id)


@dataclass
class TrackedRun:
    """One MLflow run, reopened by id in every step of a pipeline run."""

    tracker: RunTracker
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
