"""The in-process loop (what tests and benchmarks run without kfp) with its MLflow server down."""

from __future__ import annotations

import time

import pytest

from tests.helpers import TINY, closed_url, live_state
from visearch.categories import load_registry
from visearch.errors import TrackingUnavailableError
from visearch.loop import run_loop
from visearch.settings import Settings
from visearch.storage import LocalStore


def test_loop_stops_at_once_when_mlflow_is_down(indexed_home: Settings) -> None:
    """Before any work: no training, nothing written, the live collection as it was."""
    settings = indexed_home.model_copy(update={"mlflow_tracking_uri": closed_url()})
    before = live_state(settings)
    assert before[0] is not None
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="MLflow tracking server .* is unreachable"):
        run_loop(
            settings,
            LocalStore(settings.objects_dir),
            load_registry(settings.visearch_categories).get(TINY),
            show_progress=False,
        )
    assert time.monotonic() - started < 10
    assert live_state(settings) == before
