"""`visearch pipeline run` refuses bad input before starting, and stops with one line when MLflow is down.

The compiled pipeline and whole kfp.local runs: tests/components/test_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import TINY, closed_url, copy_home, env_for, live_state
from tests.unit.cli.runs import one_error_line, visearch_cli
from tests.unit.homes import home_digest
from visearch.settings import Settings


def test_pipeline_run_refuses_bad_input_before_starting(home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from visearch.cli.pipeline import pipeline_app
    from visearch.errors import ConfigError, UnknownCategoryError

    for key, value in env_for(home).items():
        if key.startswith("VISEARCH_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(pipeline_app, ["run", "--categories", f"{TINY},nope"])
    assert isinstance(result.exception, UnknownCategoryError)
    result = CliRunner().invoke(pipeline_app, ["run", "--categories", TINY, "--sampler-m", "0"])
    assert isinstance(result.exception, ConfigError)
    assert not (home.home / "kfp").exists()


@pytest.mark.slow
def test_pipeline_run_stops_with_one_line_when_mlflow_is_down(indexed_home: Settings, tmp_path: Path) -> None:
    copy = copy_home(indexed_home, tmp_path / "home")
    settings = copy.model_copy(update={"mlflow_tracking_uri": closed_url()})
    before = live_state(settings)
    files = home_digest(settings)
    result, elapsed = visearch_cli(settings, "pipeline", "run", "--categories", TINY)
    assert "MLflow tracking server" in one_error_line(result) and "unreachable" in result.stderr
    assert elapsed < 60  # the CLI's start-up; not minutes of MLflow's retries
    assert live_state(settings) == before
    assert home_digest(settings) == files
