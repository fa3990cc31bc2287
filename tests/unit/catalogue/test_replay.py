"""Replay: changes made while a run built its collection are all in the collection the alias points at."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tests.helpers import TINY
from tests.unit.catalogue.conftest import build_version, edge_index, embed, png
from visearch.catalogue import Catalogue, ChangeLog, category_lock, replay
from visearch.categories import load_registry
from visearch.errors import CatalogueBusyError
from visearch.index import point_id
from visearch.settings import Settings
from visearch.storage import LocalStore


def ids_in(catalogue: Catalogue, collection: str, ids: list[str]) -> set[str]:
    return {record.id for record in catalogue.index.records(collection, ids)}


def test_a_rebuild_keeps_the_adds_and_deletes_made_while_it_ran(live: Catalogue) -> None:
    log = ChangeLog(live.store, live.category)
    base_ids = [point_id(live.category.name, str(f)) for f in live.rows()["file"]]
    since = log.last_seq()  # the run reads the category's rows here ...
    rows_read = live.rows(upto=since)
    # ... and meanwhile users add 100 images and remove 20 (10 base images, 10 of the new ones)
    added = [live.add(png(100 + i), {"class": "Bag"}).id for i in range(100)]
    removed = base_ids[:10] + added[:10]
    for pid in removed:
        live.remove(pid)
    new = build_version(live, "m2", upto=since)  # the run's collection holds only what it read
    assert live.index.count(new.name) == len(rows_read)
    result = replay(live.index, live.store, live.category, new, since, embed, live.lock_dir)
    assert live.index.require_live(live.category.name).name == new.name
    assert ids_in(live, new.name, added[10:]) == set(added[10:])
    assert not ids_in(live, new.name, removed)
    assert live.index.count(new.name) == len(live.rows()) == len(rows_read) + 90 - 10
    assert result.seq == log.last_seq() and log.applied(new.name) == result.seq


def test_a_delete_never_comes_back_from_an_older_record(live: Catalogue) -> None:
    added = live.add(png(7), {"class": "Bag"})
    live.remove(added.id)
    new = build_version(live, "m2", upto=0)  # read before the add: the run never saw either record
    for _ in range(2):  # a retried step replays the same records again
        replay(live.index, live.store, live.category, new, 0, embed, live.lock_dir)
        assert not ids_in(live, new.name, [added.id])
    assert added.file not in set(live.rows()["file"])


def test_a_rollback_target_gets_the_log_reapplied(live: Catalogue) -> None:
    old = live.index.require_live(live.category.name)
    live.add(png(8), {"class": "Bag"})  # applied to the live version (marker advances)
    new = build_version(live, "m2")
    replay(
        live.index,
        live.store,
        live.category,
        new,
        ChangeLog(live.store, live.category).last_seq(),
        embed,
        live.lock_dir,
    )
    late = live.add(png(9), {"class": "Bag"})  # only in the new version
    assert not ids_in(live, old.name, [late.id])
    applied = ChangeLog(live.store, live.category).applied(old.name) or 0
    replay(live.index, live.store, live.category, old, applied, embed, live.lock_dir)  # the rollback
    assert ids_in(live, old.name, [late.id]) == {late.id}


def write_many(home: str, prefix: int, count: int) -> None:
    """One writer process: its own index and catalogue on the shared home."""
    settings = Settings(visearch_home=Path(home), visearch_categories=Path(home) / "categories.yaml", _env_file=None)
    category = load_registry(settings.visearch_categories).get(TINY)
    index = edge_index(settings)
    catalogue = Catalogue(LocalStore(settings.objects_dir), index, category, embed, settings.home / "locks", wait=60)
    for i in range(count):
        catalogue.add(png(prefix + i), {"class": "Bag"})
    index.close()


def test_two_processes_writing_one_embedded_home_serialize(live: Catalogue, engine: str) -> None:
    if engine != "edge":
        pytest.skip("a server serializes writes itself; qdrant-client local mode admits one process")
    home = str(live.lock_dir.parent)
    live.index.close()  # this process only looks afterwards
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=write_many, args=(home, start, 8)) for start in (200, 300)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(180)
        assert process.exitcode == 0
    log = ChangeLog(live.store, live.category)
    assert [r.seq for r in log.records()] == list(range(1, 17))
    live.index = edge_index(Settings(visearch_home=Path(home), _env_file=None))
    name = live.index.require_live(live.category.name).name
    assert live.index.count(name) == len(live.rows())
    assert log.applied(name) == 16


def test_a_held_category_lock_makes_a_writer_wait_then_give_up(live: Catalogue) -> None:
    with category_lock(live.lock_dir, live.category.name):
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=hold_briefly, args=(str(live.lock_dir), live.category.name))
        process.start()
        process.join(60)
    assert process.exitcode == 3  # CatalogueBusyError in the other process


def hold_briefly(lock_dir: str, category: str) -> None:
    try:
        with category_lock(Path(lock_dir), category, wait=0.3):
            raise SystemExit(0)
    except CatalogueBusyError:
        raise SystemExit(3) from None
