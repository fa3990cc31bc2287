"""The preprocess stage: the run's parameters and its change-log position travel with the manifest, and the
manifest is the category's base rows with what users added and removed applied."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.helpers import TINY, photo
from visearch.catalogue import ChangeLog
from visearch.data.manifest import load_manifest
from visearch.stages.preprocess import CHANGES_FILE, PARAMS_FILE, changes_seq, read_params, run_preprocess


def png(index: int) -> bytes:
    buffer = io.BytesIO()
    photo(index, size=40).save(buffer, format="PNG")
    return buffer.getvalue()


def test_params_resolved_once_travel_with_the_manifest(home, registry, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    category = registry.get(TINY)
    params = category.train.with_overrides({"epochs": 1, "trunk_lr_scale": 0.0, "embedder_layers": "16"})
    manifest_dir, summary = run_preprocess(
        home, store, category, tmp_path / "manifest", params=params, show_progress=False
    )
    stored = json.loads((manifest_dir.parent / PARAMS_FILE).read_text())
    assert (stored["epochs"], stored["trunk_lr_scale"], stored["embedder_layers"]) == (1, 0.0, [16])
    # The later stages read them there, and may still override one.
    assert read_params(manifest_dir.parent, category) == params
    assert read_params(manifest_dir.parent, category, {"epochs": 4}).epochs == 4
    # A manifest written before params travelled with it takes the category's.
    (manifest_dir.parent / PARAMS_FILE).unlink()
    assert read_params(manifest_dir.parent, category) == category.train
    assert summary["changes_seq"] == 0 == changes_seq(manifest_dir.parent)


def test_the_manifest_holds_the_change_log_up_to_the_position_it_records(home, registry, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    category = registry.get(TINY)
    base = load_manifest(run_preprocess(home, store, category, tmp_path / "before", show_progress=False)[0].parent)
    log = ChangeLog(store, category)
    removed = str(base["file"].iloc[0])
    cls = str(base["class"].iloc[0])
    label = int(base["label"].iloc[0])
    digest, key = log.put_image(png(3))
    log.append("add", "added/new-one.png", {"class": cls, "label": label}, digest=digest, key=key)
    log.append("remove", removed)

    manifest_dir, summary = run_preprocess(home, store, category, tmp_path / "after", show_progress=False)
    manifest = load_manifest(manifest_dir.parent)
    files = set(manifest["file"].astype(str))
    assert "added/new-one.png" in files and removed not in files
    assert len(manifest) == len(base)  # one in, one out
    assert manifest.loc[manifest["file"] == "added/new-one.png", "key"].item() == key  # its content-addressed bytes
    assert summary["changes_seq"] == 2 == changes_seq(manifest_dir.parent)
    assert json.loads((manifest_dir.parent / CHANGES_FILE).read_text()) == {"seq": 2}
    before_hash = json.loads((tmp_path / "before" / "report.json").read_text())["data_hash"]
    assert summary["data_hash"] != before_hash  # a changed catalogue is new data: a new version
