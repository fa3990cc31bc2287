"""MLflow adapter: one experiment per category, runs, the registered model and its ``champion`` alias.

This package face only re-exports; the code lives in its modules:

- :mod:`~visearch.tracking.connection`: the bounded ``MlflowClient`` and MLflow's errors mapped to visearch's;
- :mod:`~visearch.tracking.naming`: experiment and registered model names, tags, the code's git commit;
- :mod:`~visearch.tracking.registry`: :class:`Tracker` (registered models, the champion alias, rejected marks);
- :mod:`~visearch.tracking.runs`: :class:`TrackedRun` and the run side of the tracker (run logging).
"""

from __future__ import annotations

from visearch.tracking.connection import (
    ReachableClient,
    bound_mlflow_requests,
    check_reachable,
    open_client,
    refused,
    send_credentials,
    server_url,
    unreachable,
)
from visearch.tracking.naming import (
    CANDIDATE_TAG,
    CATEGORY_TAG,
    CHAMPION,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GIT_COMMIT_TAG,
    REJECTED_TAG,
    VERSION_TAG,
    experiment_name,
    git_commit,
    model_name,
)
from visearch.tracking.registry import PYFUNC_ARTIFACTS, Champion, Tracker
from visearch.tracking.runs import RunTracker, TrackedRun

__all__ = [
    "CANDIDATE_TAG",
    "CATEGORY_TAG",
    "CHAMPION",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "GIT_COMMIT_TAG",
    "PYFUNC_ARTIFACTS",
    "REJECTED_TAG",
    "VERSION_TAG",
    "Champion",
    "ReachableClient",
    "RunTracker",
    "TrackedRun",
    "Tracker",
    "bound_mlflow_requests",
    "check_reachable",
    "experiment_name",
    "git_commit",
    "model_name",
    "open_client",
    "refused",
    "send_credentials",
    "server_url",
    "unreachable",
]
