"""The names visearch gives things in MLflow: experiments, registered models, tags, the code's commit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHAMPION = "champion"
VERSION_TAG = "visearch.model_version"
CANDIDATE_TAG = "visearch.candidate"
REJECTED_TAG = "visearch.rolled_back"
CATEGORY_TAG = "visearch.category"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's UI links a run to its source by this tag
# The experiment tag MLflow's UI reads to pick the view: training runs, not the GenAI (traces) view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


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
