"""The in-process loop (what tests and benchmarks run without kfp) with its MLflow server down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import TINY, closed_url, copy_home, live_state
from tests.unit.homes import home_digest
from visearch.categories import load_registry
from visearch.errors import TrackingUnavailableError
from visearch.settings import Settings
from visearch.stages.in_process import run_in_process
from visearch.storage import LocalStore


def test_loop_stops_at_once_when_mlflow_is_down(indexed_home: Settings, tmp_path: Path) -> None:
    """Before any work: no training, nothing written, the live collection as it was."""
    copy = copy_home(indexed_home, tmp_path / "home")
    settings = copy.model_copy(update={"mlflow_tracking_uri": closed_url()})
    before = live_state(settings)
    assert before[0] is not None
    files = home_digest(settings)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="MLflow tracking server .* is unreachable"):
        run_in_process(
            settings,
            LocalStore(settings.objects_dir),
            load_registry(settings.visearch_categories).get(TINY),
            show_progress=False,
        )
    # The behaviour is "at once": MLflow's client would retry an unreachable server for minutes.
    # 60 s is far below that and leaves room for a loaded machine.
    assert time.monotonic() - started < 60
    assert live_state(settings) == before
    assert home_digest(settings) == files
