"""Nothing lost across a reindex: writes from other processes while a pipeline run builds a new version.

The run (preprocess → train → evaluate → embed → upsert, in this process, untracked so the copied
home's MLflow store is left alone, another seed so a new model is trained) reads the category's rows at one change-log position; right after
that (their ``changes.json`` appears), two `visearch` processes remove 20 pre-existing images and add
100 new ones while the run trains, evaluates, embeds and upserts. After the swap the live version holds all 100 and none of the 20, and
so does the version of a later run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY, copy_home, env_for, wait_until
from tests.unit.homes import search_engine
from visearch.catalogue import ChangeLog
from visearch.catalogue.log import digest_of
from visearch.categories import load_registry
from visearch.data.demo import demo_source
from visearch.index import point_id
from visearch.live_writes import open_catalogue
from visearch.settings import Settings
from visearch.stages.in_process import InProcessOutcome, run_in_process
from visearch.stages.preprocess import CHANGES_FILE, changes_seq
from visearch.storage import LocalStore

pytestmark = pytest.mark.slow
ADDS, REMOVES = 100, 20
# Another seed (a new model), and a few more training steps than `tiny`'s 3, so the writers have
# time to land writes in the old version while the new one is built.
LONGER = {"seed": 7, "epochs": 8, "patience": 0, "max_steps": 40}


def new_images(target: Path) -> list[Path]:
    """100 real demo images of a class `tiny` does not have (Shirt), as files to add."""
    source = demo_source()
    meta = pd.read_csv(source / "meta.csv", index_col=0)
    paths = []
    for file in meta.loc[meta["class"] == "Shirt", "file"].head(ADDS):
        path = target / Path(str(file)).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((source / "images" / str(file)).read_bytes())
        paths.append(path)
    return paths


# A `visearch` process started ahead and warmed up (imports), that runs its command once ``start`` exists:
# the writes begin the moment the run has read its data, not a Python start-up later.
WRITER = """
import sys, time
from pathlib import Path

import visearch.live_writes  # noqa: F401 - the engine, the model runtime, the catalogue
from visearch.cli.main import main

ready, start, *args = sys.argv[1:]
Path(ready).touch()
while not Path(start).is_file():
    time.sleep(0.02)
sys.argv = ["visearch", *args]
main()
"""


def writer(settings: Settings, start: Path, *args: str, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A warmed-up `visearch ARGS` waiting for ``start``; returns it and the file it touches when ready."""
    ready = out.with_suffix(".ready")
    with out.open("wb") as handle, out.with_suffix(".err").open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ready), str(start), *args],
            env=env_for(settings),
            stdout=handle,
            stderr=errors,
        )
    return process, ready


def holds(settings: Settings, ids: list[str]) -> tuple[str, set[str], int]:
    """The live version, which of ``ids`` it holds, and its point count."""
    engine = search_engine(settings)
    try:
        live = engine.index.require_live(TINY)
        return live.name, {r.id for r in engine.index.records(live.name, ids)}, engine.index.count(live.name)
    finally:
        engine.close()


def test_adds_and_removes_during_a_rebuild_are_all_in_the_swapped_version(
    indexed_home: Settings, tmp_path: Path
) -> None:
    settings = copy_home(indexed_home, tmp_path / "live")
    store = LocalStore(settings.objects_dir)
    category = load_registry(settings.visearch_categories).get(TINY)
    images = new_images(tmp_path / "shirts")
    added_ids = [point_id(TINY, f"added/{digest_of(path.read_bytes())[:16]}.png") for path in images]
    assert len(set(added_ids)) == ADDS
    engine = search_engine(settings)
    try:
        old = engine.index.require_live(TINY)
        rows = open_catalogue(engine, TINY).rows()
        # One removal before the run, so its data differs from the live version's whatever the gate picks.
        open_catalogue(engine, TINY).remove(point_id(TINY, str(rows["file"].iloc[0])))
    finally:
        engine.close()
    per_class = rows.iloc[1:].groupby("class").head(REMOVES // rows["class"].nunique())  # keep every class trainable
    removed_ids = [point_id(TINY, str(file)) for file in per_class["file"]]
    assert len(removed_ids) == REMOVES
    before = len(rows) - 1

    manifest = settings.work_dir / TINY / "manifest"
    shutil.rmtree(settings.work_dir / TINY)  # this run's manifest (and its changes.json) appears anew
    outcomes: list[InProcessOutcome | BaseException] = []

    def rebuild() -> None:
        try:
            outcomes.append(
                run_in_process(settings, store, category, show_progress=False, track=False, overrides=LONGER)
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcomes.append(exc)

    start = manifest / CHANGES_FILE
    remover, removing = writer(settings, start, "remove", "-c", TINY, *removed_ids, out=tmp_path / "removed.txt")
    adder, adding = writer(
        settings, start, "add", "-c", TINY, *map(str, images), "--class", "Shirt", "--json", out=tmp_path / "added.json"
    )
    wait_until(lambda: removing.is_file() and adding.is_file(), timeout=300)
    builder = threading.Thread(target=rebuild)
    builder.start()
    builder.join(timeout=900)
    for process, out in ((remover, "removed.txt"), (adder, "added.json")):
        assert process.wait(timeout=600) == 0, (tmp_path / out).with_suffix(".err").read_text()
    (outcome,) = outcomes
    assert isinstance(outcome, InProcessOutcome), outcome

    seq = changes_seq(manifest)
    log = ChangeLog(store, category)
    assert seq == 1 and [r.seq for r in log.records(after=seq)] == list(range(2, 2 + ADDS + REMOVES))
    # The writes overlapped the build: some landed in the old version while the new one was built.
    overlapped = (log.applied(old.name) or 0) - seq
    print(f"{overlapped} of {ADDS + REMOVES} writes landed in the old version while the new one was built")
    assert overlapped > 0, "no write landed before the swap: the test did not overlap the build"
    added = json.loads((tmp_path / "added.json").read_text())
    assert [a["id"] for a in added] == added_ids and {a["status"] for a in added} == {"created"}

    live, held, count = holds(settings, added_ids + removed_ids)
    assert live == outcome.collection != old.name
    assert held == set(added_ids) and count == before - REMOVES + ADDS

    # A later run reads base rows + the whole log: it keeps all of them too.
    later = run_in_process(settings, store, category, show_progress=False, track=False, overrides={"seed": 8})
    live, held, count = holds(settings, added_ids + removed_ids)
    assert live == later.collection and held == set(added_ids) and count == before - REMOVES + ADDS
