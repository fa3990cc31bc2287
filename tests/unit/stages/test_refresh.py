"""Refresh: a live category brought up to date with its change log without training, and the policy that
says when it needs training instead."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from tests.helpers import TINY, copy_home, photo
from visearch.catalogue import ChangeLog
from visearch.categories import load_registry
from visearch.index import open_index
from visearch.live_writes import open_catalogue
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.stages.refresh import refresh
from visearch.storage import make_store
from visearch.tracking import Tracker


def png(index: int) -> bytes:
    buffer = io.BytesIO()
    photo(index, size=40).save(buffer, format="PNG")
    return buffer.getvalue()


def add(settings: Settings, data: bytes, cls: str) -> str:
    registry = load_registry(settings.visearch_categories)
    index = open_index(settings)
    try:
        engine = SearchEngine(settings, registry, make_store(settings), index)
        return open_catalogue(engine, TINY).add(data, {"class": cls}).id
    finally:
        index.close()


def test_refresh_counts_changes_since_training_records_a_run_and_applies_the_policy(
    indexed_home: Settings, tmp_path: Path
) -> None:
    settings = copy_home(indexed_home, tmp_path / "home")
    store = make_store(settings)
    category = load_registry(settings.visearch_categories).get(TINY)

    quiet = refresh(settings, store, category)
    assert quiet.changes == {"add": 0, "replace": 0, "remove": 0} and not quiet.retrain and quiet.applied == 0
    run = Tracker.from_settings(settings).client.get_run(quiet.run_id)
    assert run.data.tags["visearch.mode"] == "refresh" and run.data.params["data_version"] == quiet.data_version

    add(settings, png(1), "Bag")
    one = refresh(settings, store, category)
    assert one.changes["add"] == 1 and not one.retrain  # 1 of 41 images: within the default 20%
    assert one.data_version != quiet.data_version
    assert Tracker.from_settings(settings).client.get_run(one.run_id).data.metrics["changes.add"] == 1.0

    strict = category.model_copy(update={"refresh": category.refresh.model_copy(update={"max_changed_share": 0.01})})
    assert refresh(settings, store, strict, track=False).retrain  # 1 of 41 is past 1%

    add(settings, png(2), "Umbrella")  # a class the model never saw
    new = refresh(settings, store, category, track=False)
    assert new.retrain and "Umbrella" in new.reason and new.new_classes == ["Umbrella"]


def test_refresh_applies_a_change_the_live_index_missed(indexed_home: Settings, tmp_path: Path) -> None:
    """A writer killed between its record and its index write: the refresh completes it, searchable after."""
    settings = copy_home(indexed_home, tmp_path / "home")
    store = make_store(settings)
    category = load_registry(settings.visearch_categories).get(TINY)
    log = ChangeLog(store, category)
    digest, key = log.put_image(png(5))
    meta = pd.read_csv(settings.objects_dir / category.data_prefix / category.meta, index_col=0)
    bag = int(meta.loc[meta["class"] == "Bag", "label"].iloc[0])  # the class's label in the meta CSV
    log.append("add", "added/missed.png", {"class": "Bag", "label": bag}, digest=digest, key=key)

    outcome = refresh(settings, store, category, track=False)
    assert outcome.applied == 1 and outcome.changes["add"] == 1
    index = open_index(settings)
    try:
        engine = SearchEngine(settings, load_registry(settings.visearch_categories), store, index)
        assert engine.search(TINY, png(5), k=1).results[0].file == "added/missed.png"
    finally:
        index.close()


def test_refresh_from_the_command_line(indexed_home: Settings, home: Settings, tmp_path: Path) -> None:
    from tests.unit.cli.runs import assert_one_line_error, visearch

    settings = copy_home(indexed_home, tmp_path / "indexed")
    done = visearch(settings, "refresh", "-c", TINY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{TINY}: no change since the model was trained") and "refreshed" in done.stdout
    assert_one_line_error(visearch(home, "refresh", "-c", TINY), "has no index yet")  # nothing indexed there
