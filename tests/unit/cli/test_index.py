"""`visearch index status|rollback` in process, on a home with a real embedded index and SQLite MLflow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.helpers import TINY, closed_url, use_home
from visearch.cli import app
from visearch.errors import NotFoundError, TrackingUnavailableError, UnknownCategoryError
from visearch.index import open_index, point_id
from visearch.settings import Settings
from visearch.tracking import Tracker

Cli = Callable[..., Result]


@pytest.fixture
def cli(home: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """``visearch ARGS`` in this process, its settings from the environment of the test's home."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    use_home(monkeypatch, home, cwd)
    return lambda *args: CliRunner().invoke(app, list(args))


def make_versions(settings: Settings, models: tuple[str, ...] = ("m1", "m2")) -> list[str]:
    """One sealed version per model, each made live in turn (the last one is live); version i holds i + 1 points."""
    index = open_index(settings)
    try:
        names = []
        for size, model in enumerate(models, 1):
            version = index.create(TINY, model, "d1", 4)
            files = [f"{model}-{i}.png" for i in range(size)]
            ids = [point_id(TINY, file) for file in files]
            index.upsert(version.name, ids, np.ones((size, 4), "float32"), [{"class": "Bag"} for _ in files])
            index.seal(version.name)
            index.swap_alias(TINY, version.name)
            names.append(version.name)
        return names
    finally:
        index.close()


def live(settings: Settings) -> str | None:
    index = open_index(settings)
    try:
        version = index.live(TINY)
        return version.name if version else None
    finally:
        index.close()


def register(settings: Settings, tmp_path: Path, *models: str) -> Tracker:
    """Register a (tiny, file-only) logged model per visearch model version in the home's MLflow."""
    tracker = Tracker.from_settings(settings)
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "meta.json").write_text("{}")
    for model in models:
        run_id = tracker.start_run(TINY)
        tracker.register(TINY, run_id, tracker.log_model(run_id, "model", folder), model)
    return tracker


def test_status_of_a_category_without_an_index_says_how_to_build_one(cli: Cli) -> None:
    result = cli("index", "status", "--category", TINY)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{TINY} has no index yet; run the pipeline for it (visearch pipeline run --categories {TINY})"
    ]


def test_status_lists_the_versions_oldest_first_and_marks_the_live_one(cli: Cli, home: Settings) -> None:
    first, second = make_versions(home)
    result = cli("index", "status", "--category", TINY)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"  {first} (1 points)", f"* {second} (2 points)"]


def test_rollback_moves_the_alias_and_the_champion_together(cli: Cli, home: Settings, tmp_path: Path) -> None:
    first, second = make_versions(home)
    tracker = register(home, tmp_path, "m1", "m2")
    tracker.set_champion(TINY, tracker.find_version(TINY, "m2") or "")

    result = cli("index", "rollback", "--category", TINY)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"alias {TINY} -> {first} (was {second})",
        f"MLflow champion -> version {tracker.find_version(TINY, 'm1')}",
    ]
    assert live(home) == first
    champion = tracker.champion(TINY)
    assert champion is not None and champion.model_version == "m1"
    assert tracker.rejected(TINY) == {"m2"}  # the next run never promotes the model rolled back from

    result = cli("index", "rollback", "--category", TINY, "--to", second)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"alias {TINY} -> {second} (was {first})"
    assert live(home) == second


def test_rollback_to_an_unregistered_model_moves_the_alias_and_says_the_champion_stays(
    cli: Cli, home: Settings
) -> None:
    first, second = make_versions(home)
    result = cli("index", "rollback", "--category", TINY)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"alias {TINY} -> {first} (was {second})",
        "MLflow champion not moved: model m1 is not registered",
    ]
    assert live(home) == first


def test_rollback_with_mlflow_down_changes_nothing(cli: Cli, home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    second = make_versions(home)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_url())
    result = cli("index", "rollback", "--category", TINY)
    assert isinstance(result.exception, TrackingUnavailableError), result.output
    assert live(home) == second


def test_unknown_categories_and_missing_versions_are_errors(cli: Cli, home: Settings) -> None:
    for command in ("status", "rollback"):
        result = cli("index", command, "--category", "nope")
        assert isinstance(result.exception, UnknownCategoryError), result.output
    result = cli("index", "rollback", "--category", TINY)  # nothing is live yet
    assert isinstance(result.exception, NotFoundError), result.output
    make_versions(home)
    result = cli("index", "rollback", "--category", TINY, "--to", f"{TINY}__nope")
    assert isinstance(result.exception, NotFoundError), result.output
