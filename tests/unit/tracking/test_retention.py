"""Registry retention on a real SQLite store: old versions go, the champion, versions in use and rejected marks stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from visearch.settings import Settings
from visearch.tracking import CHAMPION, VERSION_TAG, Tracker, model_name


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker.from_settings(Settings(visearch_home=tmp_path / "home", _env_file=None))


def register(tracker: Tracker, tmp_path: Path, version: str) -> str:
    """One registry version of a (tiny, fake-weighted) model with visearch version ``version``."""
    run = tracker.run(tracker.start_run("cat"))
    files = tmp_path / version / "artifacts"  # where a pyfunc keeps the model's files
    files.mkdir(parents=True)
    (files / "meta.json").write_text(f'{{"version": "{version}"}}')
    model_id = tracker.log_model(run.run_id, "model", tmp_path / version, {VERSION_TAG: version})
    return tracker.register("cat", run.run_id, model_id, version)


def remaining(tracker: Tracker) -> list[str]:
    found = tracker.client.search_model_versions(f"name='{model_name('cat')}'")
    return sorted((str(v.version) for v in found), key=int)


def test_pruning_keeps_the_newest_the_champion_versions_in_use_and_rejected_ones(
    tracker: Tracker, tmp_path: Path
) -> None:
    numbers = [register(tracker, tmp_path, f"v{i}") for i in range(1, 8)]
    assert numbers == ["1", "2", "3", "4", "5", "6", "7"]
    tracker.set_champion("cat", "2")
    tracker.reject("cat", "v1", "rolled back to an older version")

    # keep 2: versions 7 and 6; the champion (2), v3 (a kept index version serves it), rejected v1 stay.
    pruned = tracker.prune_versions("cat", 2, in_use={"v3", "unregistered"})
    assert pruned == ["4", "5"]
    assert remaining(tracker) == ["1", "2", "3", "6", "7"]
    assert tracker.champion("cat") is not None and tracker.champion("cat").model_version == "v2"  # type: ignore[union-attr]
    assert tracker.rejected("cat") == frozenset({"v1"})
    assert tracker.find_version("cat", "v4") is None  # a pruned model is registered again if it comes back

    # Nothing more to prune; a category with no registered model prunes nothing.
    assert tracker.prune_versions("cat", 2, in_use={"v3"}) == []
    assert tracker.prune_versions("other", 1) == []
    # The champion moves on: the old one is an ordinary old version now.
    tracker.set_champion("cat", "7")
    assert tracker.prune_versions("cat", 2, in_use=set()) == ["2", "3"]
    version = tracker.client.get_model_version_by_alias(model_name("cat"), CHAMPION)
    assert str(version.version) == "7" and remaining(tracker) == ["1", "6", "7"]
