"""The step commands (`visearch preprocess`, `train`, ...) as a user runs them: bad data and bad
parameters are one `error:` line."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import TINY
from tests.unit.cli.runs import assert_one_line_error, visearch
from visearch.data.manifest import load_manifest
from visearch.settings import Settings


def test_preprocess_reports_missing_meta_column(home: Settings) -> None:
    meta = home.objects_dir / "datasets" / TINY / "meta.csv"
    meta.write_text(",file,label\n0,a.png,0\n")
    assert_one_line_error(visearch(home, "preprocess", "-c", TINY), "lacks column(s) class")


def test_train_rejects_bad_parameters(home: Settings) -> None:
    assert_one_line_error(visearch(home, "train", "-c", TINY, "--batch-size", "1"), "invalid training parameter")


def test_embed_by_shards_and_upsert_them_together(home: Settings, tmp_path: Path) -> None:
    """`visearch embed --shard i/n` per shard, then one `upsert` given every shard: one point per image."""
    from visearch.categories import TrainParams, load_registry
    from visearch.embed import read_shards
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline
    from visearch.storage import LocalStore

    store = LocalStore(home.objects_dir)
    manifest, _ = run_preprocess(
        home, store, load_registry(home.visearch_categories).get(TINY), home.work_dir / TINY / "manifest"
    )
    model = save_baseline(TrainParams(input_size=32), tmp_path / "model")
    assert_one_line_error(visearch(home, "embed", "-c", TINY, "--model", str(model), "--shard", "2/2"), "shard 2/2")
    for shard in ("0/2", "1/2"):
        done = visearch(home, "embed", "-c", TINY, "--model", str(model), "--shard", shard)
        assert done.returncode == 0, done.stderr
    # Without --out each shard lands in its own folder: neither overwrote the other.
    parts = [home.work_dir / TINY / f"embeddings-{i}of2" for i in range(2)]
    assert sum(len(read_shards(part)[0]) for part in parts) == len(load_manifest(manifest.parent))
    args = ("upsert", "-c", TINY, "--model", str(model), "--embeddings", str(parts[1]), "--embeddings", str(parts[0]))
    done = visearch(home, *args)
    assert done.returncode == 0, done.stderr
    assert f"({len(load_manifest(manifest.parent))} points; previous None)" in done.stdout
    assert_one_line_error(visearch(home, *args[:-2]), "do not make one whole category")


def test_check_takes_the_category_as_option_or_argument(home: Settings) -> None:
    by_option = visearch(home, "check", "-c", TINY, "--json")
    assert by_option.returncode == 0, by_option.stderr
    by_argument = visearch(home, "check", TINY, "--json")
    assert by_argument.stdout == by_option.stdout
    assert_one_line_error(visearch(home, "check", TINY, "--category", "fashion-mnist"), "two categories given")
    assert_one_line_error(visearch(home, "check"), "name the category")


def test_check_says_when_the_live_index_lags_the_registry(home: Settings) -> None:
    """Indexed before the entry declared its fields/captions: check says so; after the next upsert it does not."""
    import json

    from tests.helpers import prepared
    from visearch.categories import load_registry
    from visearch.stages.upsert import run_upsert
    from visearch.storage import LocalStore

    registry, store = load_registry(home.visearch_categories), LocalStore(home.objects_dir)
    declared = registry.get(TINY)
    before = declared.model_copy(update={"fields": {}, "captions": []})
    manifest, model, embeddings = prepared(home, registry, store, 32)
    old = run_upsert(home, store, before, manifest, model, embeddings).collection
    lagging = visearch(home, "check", "-c", TINY)
    assert lagging.returncode == 0, lagging.stderr
    assert f"index: live {old}; lags the registry:" in lagging.stdout and "next pipeline run" in lagging.stdout
    new = run_upsert(home, store, declared, manifest, model, embeddings).collection
    report = json.loads(visearch(home, "check", "-c", TINY, "--json").stdout)["index"]
    assert report["live"] == new != old and report["lags_registry"] is False
