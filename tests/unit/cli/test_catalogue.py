"""`visearch add`, `remove` and `sync` on a copy of the indexed tiny home: real model, real index, real images.

Most commands run in this process through the CLI's own entry point (``main``: argument parsing,
``error:`` lines, exit codes), which saves a Python start per call; the crash test runs real
processes and kills one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pytest

from tests.helpers import (
    TINY,
    copy_home,
    env_for,
    jpeg,
    kill9,
    photo,
    use_home,
    wait_until,
)
from tests.service.uploads import png_claiming
from tests.unit.data.datasets import write
from tests.unit.homes import search_engine
from visearch.catalogue import ChangeLog
from visearch.catalogue.log import digest_of
from visearch.categories import load_registry
from visearch.cli.main import main
from visearch.index import open_index, point_id
from visearch.live_writes import open_catalogue
from visearch.settings import Settings
from visearch.storage import LocalStore


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


class Cli(Protocol):
    def __call__(self, settings: Settings, *args: str) -> Ran: ...


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """`visearch ARGS` in this process, on a home: exit code, stdout, stderr."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(settings: Settings, *args: str) -> Ran:
        use_home(monkeypatch, settings, cwd)
        monkeypatch.setattr(sys, "argv", ["visearch", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return Ran(int(exited.value.code or 0), captured.out, captured.err)

    return run


@pytest.fixture
def live(indexed_home: Settings, tmp_path: Path) -> Settings:
    """A private copy of the indexed home: these tests write to it."""
    return copy_home(indexed_home, tmp_path / "live")


def changes(settings: Settings) -> list[str]:
    """What a catalogue write leaves: change records and image bytes (the indexed home has none)."""
    store = LocalStore(settings.objects_dir)
    return [*store.list(f"datasets/{TINY}/changes/log"), *store.list(f"datasets/{TINY}/images/changes")]


def top(cli: Cli, settings: Settings, image: Path) -> dict[str, Any]:
    """The best hit of `visearch search` with this image."""
    return cli(settings, "search", "-c", TINY, "-k", "1", "--json", str(image)).json()["results"][0]  # type: ignore[no-any-return]


def base_image(settings: Settings, cls: str = "Bag") -> Path:
    return sorted((settings.objects_dir / "datasets" / TINY / "images" / cls).iterdir())[0]


def one_error(ran: Ran, text: str) -> None:
    assert ran.code != 0 and "Traceback" not in ran.err
    errors = [line for line in ran.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], ran.err


def live_model(settings: Settings) -> str:
    index = open_index(settings)
    try:
        return index.require_live(TINY).model_version
    finally:
        index.close()


# --- add and remove ---------------------------------------------------------------------------------
def test_add_is_found_by_search_and_the_same_add_again_changes_nothing(
    cli: Cli, live: Settings, tmp_path: Path
) -> None:
    hat = write(tmp_path / "hat.jpg", jpeg(photo(1)))
    copy = write(tmp_path / "copy.png", base_image(live).read_bytes())  # a listing the category already has
    ran = cli(live, "add", "-c", TINY, str(hat), str(copy), "--class", "Hat", "--row", '{"article": "cap"}', "--json")
    first, second = ran.json()
    assert first["status"] == second["status"] == "created"
    assert first["model_version"] == live_model(live) and first["new_class"] and not second["new_class"]
    assert first["file"] == f"added/{digest_of(hat.read_bytes())[:16]}.jpg"  # named by its content
    assert [d["file"] for d in second["near_duplicates"]] == [f"Bag/{base_image(live).name}"]
    assert top(cli, live, hat)["id"] == first["id"]
    hit = top(cli, live, hat)
    assert hit["class"] == "Hat" and hit["captions"]["article"] == "cap"

    again = cli(live, "add", "-c", TINY, str(hat), "--class", "Hat", "--row", '{"article": "cap"}')
    assert again.code == 0 and f"{first['id']} unchanged" in again.out, again.err
    assert ChangeLog(LocalStore(live.objects_dir), load_registry(live.visearch_categories).get(TINY)).last_seq() == 2

    # The same bytes under another name and class: a new listing, and its near-duplicates say so.
    text = cli(live, "add", "-c", TINY, str(copy), "--class", "Shirt", "--row", '{"file": "mine/copy.png"}')
    assert "near-duplicate 100.0%" in text.out and "new class 'Shirt'" in text.out, text.err
    conflict = cli(live, "add", "-c", TINY, str(copy), "--class", "Shirt")  # its content name holds other values
    one_error(conflict, "is already in category")


def test_remove_is_gone_from_search_at_once(cli: Cli, live: Settings) -> None:
    image = base_image(live, "Dress")
    victim = top(cli, live, image)
    assert victim["file"] == f"Dress/{image.name}"
    ran = cli(live, "remove", "-c", TINY, victim["id"])
    assert ran.code == 0 and f"{victim['id']}: removed" in ran.out, ran.err
    assert top(cli, live, image)["id"] != victim["id"]
    one_error(cli(live, "remove", "-c", TINY, victim["id"]), "id: no image")  # removed once, unknown now


# --- sync ---------------------------------------------------------------------------------------------
def source_folder(settings: Settings, target: Path) -> tuple[Path, dict[str, str]]:
    """The category's data as a folder, then edited: 2 rows dropped, 1 new caption, 1 new image's bytes, 1 added.

    Returns the folder and the file of each kind of change.
    """
    shutil.copytree(settings.objects_dir / "datasets" / TINY, target)
    meta = pd.read_csv(target / "meta.csv", index_col=0)
    removed = [str(f) for f in meta["file"].iloc[:2]]
    meta = meta.iloc[2:].reset_index(drop=True)
    recaptioned, rebytes = str(meta["file"].iloc[0]), str(meta["file"].iloc[1])
    meta.loc[0, "article"] = "renamed"
    write(target / "images" / rebytes, jpeg(photo(2)))
    write(target / "images" / "new" / "photo.jpg", jpeg(photo(3)))
    bag = int(meta.loc[meta["class"] == "Bag", "label"].iloc[0])
    meta.loc[len(meta)] = {"file": "new/photo.jpg", "class": "Bag", "label": bag, "article": "new", "source": "s"}
    meta.loc[len(meta)] = {"file": "new/missing.jpg", "class": "Bag", "label": bag, "article": "", "source": ""}
    meta.to_csv(target / "meta.csv")
    return target, {
        "removed": " ".join(removed),
        "recaptioned": recaptioned,
        "rebytes": rebytes,
        "added": "new/photo.jpg",
    }


def test_sync_dry_run_prints_the_plan_and_writes_nothing(cli: Cli, live: Settings, tmp_path: Path) -> None:
    source, files = source_folder(live, tmp_path / "source")
    ran = cli(live, "sync", "-c", TINY, "--source", str(source), "--dry-run")
    assert ran.code == 0, ran.err
    assert "1 to add, 2 to replace, 2 to remove, 36 unchanged, 1 skipped" in ran.out
    assert f"replace  {files['rebytes']}  (bytes)" in ran.out
    assert f"replace  {files['recaptioned']}  (article: " in ran.out and "-> renamed" in ran.out
    assert all(f"remove   {file}" in ran.out for file in files["removed"].split())
    assert "skip     new/missing.jpg: missing image" in ran.out and "dry run: nothing written" in ran.out
    assert changes(live) == []


def test_sync_applies_adds_replacements_and_removals(cli: Cli, live: Settings, tmp_path: Path) -> None:
    source, files = source_folder(live, tmp_path / "source")
    ran = cli(live, "sync", "-c", TINY, "--source", str(source), "--no-progress")
    assert ran.code == 1, ran.err  # one row skipped (its image is missing): reported, the rest applied
    assert "synced 5 of 5 changes" in ran.out and "0 failed, 1 skipped" in ran.out
    assert top(cli, live, source / "images" / files["added"])["file"] == files["added"]
    replaced = top(cli, live, source / "images" / files["rebytes"])
    assert replaced["file"] == files["rebytes"] and replaced["similarity"] > 99.9  # the new bytes' vector
    for file in files["removed"].split():
        hit = top(cli, live, live.objects_dir / "datasets" / TINY / "images" / file)
        assert hit["id"] != point_id(TINY, file)
    again = cli(live, "sync", "-c", TINY, "--source", str(source), "--dry-run")
    assert "0 to add, 0 to replace, 0 to remove, 39 unchanged, 1 skipped" in again.out, again.out


# --- bad input: one error line, nothing written ----------------------------------------------------
BAD_ADDS = [
    ("notes", ["--class", "Bag"], "notes.png: not a supported image"),
    ("huge", ["--class", "Bag"], "huge.png: image too large"),
    ("good", ["--row", '{"article": "cap"}'], "class: required"),
    ("good", ["--class", "Bag", "--row", '{"colour": "red"}'], "colour: unknown column"),
    ("good", ["--class", "Bag", "--row", '{"label": 1}'], "label: class 'Bag' has label"),
    ("good", ["--class", "Bag", "--row", "[1]"], "row: --row must be a JSON object"),
    ("good+notes", ["--class", "Bag"], "notes.png: not a supported image"),  # the good one is not added either
]


@pytest.mark.parametrize(("images", "options", "message"), BAD_ADDS)
def test_a_bad_add_is_one_error_line_and_writes_nothing(
    cli: Cli, live: Settings, tmp_path: Path, images: str, options: list[str], message: str
) -> None:
    files = {
        "good": write(tmp_path / "good.jpg", jpeg(photo(4))),
        "notes": write(tmp_path / "notes.png", b"just text"),
        "huge": write(tmp_path / "huge.png", png_claiming(20_000, 20_000)),
    }
    paths = [str(files[name]) for name in images.split("+")]
    one_error(cli(live, "add", "-c", TINY, *paths, *options), message)
    assert changes(live) == []


def test_bad_targets_are_one_error_line_and_write_nothing(
    cli: Cli, live: Settings, home: Settings, tmp_path: Path
) -> None:
    good = str(write(tmp_path / "good.jpg", jpeg(photo(5))))
    one_error(cli(live, "add", "-c", "nope", good, "--class", "Bag"), "unknown category 'nope'")
    one_error(cli(home, "add", "-c", TINY, good, "--class", "Bag"), "has no index yet")  # nothing indexed yet
    one_error(cli(home, "remove", "-c", TINY, point_id(TINY, "x.png")), "has no index yet")
    unknown = point_id(TINY, "never/added.png")
    one_error(cli(live, "remove", "-c", TINY, unknown), f"id: no image {unknown}")
    known = point_id(TINY, f"Bag/{base_image(live).name}")
    one_error(cli(live, "remove", "-c", TINY, known, unknown), "id: no image")  # the known one stays
    source, _ = source_folder(live, tmp_path / "source")
    meta = pd.read_csv(source / "meta.csv", index_col=0).assign(colour="red")
    meta.to_csv(source / "meta.csv")
    one_error(cli(live, "sync", "-c", TINY, "--source", str(source)), "colour: unknown column")
    one_error(cli(live, "sync", "-c", TINY, "--source", str(tmp_path)), "meta.csv: no such file")
    assert changes(live) == [] and changes(home) == []
    assert top(cli, live, base_image(live))["id"] == known


# --- crash safety: kill -9 in the middle of an add ----------------------------------------------------
def test_a_killed_add_leaves_each_image_whole_and_the_same_add_again_finishes_it(
    cli: Cli, live: Settings, tmp_path: Path
) -> None:
    paths = [write(tmp_path / "batch" / f"{i:02d}.jpg", jpeg(photo(10 + i, size=64))) for i in range(30)]
    ids = {path: point_id(TINY, f"added/{digest_of(path.read_bytes())[:16]}.jpg") for path in paths}
    assert len(set(ids.values())) == len(paths)
    before = count_live(live)
    log_dir = live.objects_dir / "datasets" / TINY / "changes" / "log"
    process = subprocess.Popen(
        [sys.executable, "-m", "visearch.cli", "add", "-c", TINY, *map(str, paths), "--class", "Bag"],
        env=env_for(live),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: log_dir.is_dir() and len(list(log_dir.glob("*.json"))) >= 3, timeout=180)
    finally:
        kill9(process)
    engine = search_engine(live)
    try:
        catalogue = open_catalogue(engine, TINY)
        logged = {point_id(TINY, r.file) for r in catalogue.log.records()}
        assert 3 <= len(logged) < len(paths), "the kill came too late to cut the batch"
        # The change log is the write-ahead log: the index may lack the records since the writer's last
        # flush (writes are group-committed) but never holds an image without its record; the next write
        # (or a service start) applies the rest.
        assert indexed(engine, list(ids.values())) <= logged
        catalogue.catch_up()
        assert indexed(engine, list(ids.values())) == logged  # whole or absent, never half
        for path, pid in ids.items():
            if pid in logged:
                assert engine.search(TINY, path.read_bytes(), k=1).results[0].id == pid
    finally:
        engine.close()
    again = cli(live, "add", "-c", TINY, *map(str, paths), "--class", "Bag", "--json").json()
    assert [entry["id"] for entry in again] == list(ids.values())
    assert [entry["status"] == "unchanged" for entry in again] == [ids[path] in logged for path in paths]
    assert count_live(live) == before + len(paths)
    records = ChangeLog(LocalStore(live.objects_dir), load_registry(live.visearch_categories).get(TINY)).records()
    assert len(records) == len(paths) and len({r.file for r in records}) == len(paths)


def count_live(settings: Settings) -> int:
    index = open_index(settings)
    try:
        return index.count(index.require_live(TINY).name)
    finally:
        index.close()


def indexed(engine: Any, ids: list[str]) -> set[str]:
    """The ids among ``ids`` that the live version holds."""
    live = engine.index.require_live(TINY)
    return {record.id for record in engine.index.records(live.name, ids)}
