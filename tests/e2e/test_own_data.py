"""Bring your own category: bad rows cost their row, `visearch check`, content versions, resume, rollback, retention.

Real files, the real CLI (subprocesses), the embedded index, a real SQLite MLflow store.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS, env_for, make_home
from visearch.categories import load_registry
from visearch.data.manifest import load_manifest, manifest_hash
from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DataError
from visearch.index.versions import CollectionVersion
from visearch.settings import Settings
from visearch.storage import LocalStore


def visearch(
    settings: Settings, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env={**env_for(settings), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def png(size: tuple[int, int] = (28, 28), colour: int = 128) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (colour, colour, colour)).save(out, format="PNG")
    return out.getvalue()


def tiny_meta(settings: Settings) -> pd.DataFrame:
    return pd.read_csv(settings.objects_dir / "datasets" / TINY / "meta.csv", index_col=0)


BAD_ROWS = {
    # file: (class, label, what the image is (None: no file), expected reason kind)
    "no-class.png": ("", 0, "ok", "empty class"),
    "text-label.png": ("Trouser", "one", "ok", "bad label"),
    "wrong-label.png": ("Trouser", 99, "ok", "label mismatch"),
    "missing.png": ("Trouser", None, None, "missing image"),
    "corrupt.png": ("Trouser", None, "corrupt", "unreadable image"),
    "tiny-side.png": ("Trouser", None, "small", "image too small"),
    "../outside.png": ("Trouser", None, None, "path outside the folder"),
    "shared-label.png": ("Lonely", None, "ok", "label shared"),
}


def add_bad_rows(settings: Settings) -> dict[str, str]:
    """Ten bad rows of different kinds in the tiny category's store; returns file -> expected reason kind."""
    meta = tiny_meta(settings)
    trouser = int(meta.loc[meta["class"] == "Trouser", "label"].iloc[0])
    images = settings.objects_dir / "datasets" / TINY / "images"
    rows, expected = [], {}
    for file, (cls, label, image, kind) in BAD_ROWS.items():
        rows.append({"file": file, "class": cls, "label": trouser if label is None else label})
        expected[file] = kind
        if image == "ok":
            (images / file).write_bytes(png())
        elif image == "corrupt":
            (images / file).write_bytes(png()[:40])
        elif image == "small":
            (images / file).write_bytes(png((4, 4)))
    duplicate = str(meta["file"].iloc[0])
    rows.append({"file": duplicate, "class": meta["class"].iloc[0], "label": int(meta["label"].iloc[0])})
    rows.append({"file": "", "class": "Trouser", "label": trouser})
    table = pd.concat([meta, pd.DataFrame(rows)], ignore_index=True)
    (settings.objects_dir / "datasets" / TINY / "meta.csv").write_text(table.to_csv(), encoding="utf-8")
    expected[duplicate] = "duplicate file"
    return expected


# --- 1. rows, not categories -----------------------------------------------------------------
def test_bad_rows_are_dropped_one_by_one_and_reported_by_check(home: Settings) -> None:
    expected = add_bad_rows(home)
    result = visearch(home, "check", TINY, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kept"] == len(TINY_CLASSES) * TINY_PER_CLASS
    reasons = {entry["file"]: entry["reason"].split(":", 1)[0] for entry in report["dropped"]}
    for file, kind in expected.items():
        assert reasons.get(file) == kind, (file, reasons.get(file))
    assert "empty file name" in reasons.values()  # the row without a file is named by its row number
    assert report["can_run"] is True and report["classes"] == len(TINY_CLASSES)
    assert "Traceback" not in result.stderr
    text = visearch(home, "check", TINY)
    assert "dropped  reason" in text.stdout and "label mismatch" in text.stdout
    assert "evaluation: in-domain + class-disjoint" in text.stdout and "the pipeline can run" in text.stdout


def test_preprocess_writes_the_report_and_logs_it_to_mlflow(home: Settings) -> None:
    from visearch.stages.preprocess import run_preprocess
    from visearch.tracking import Tracker

    expected = add_bad_rows(home)
    tracker = Tracker.from_settings(home)
    run = tracker.run(tracker.start_run(TINY))
    registry = load_registry(home.visearch_categories)
    manifest, summary = run_preprocess(
        home, LocalStore(home.objects_dir), registry.get(TINY), home.work_dir / "m", show_progress=False, run=run
    )
    report = json.loads(manifest.with_name("report.json").read_text())
    assert {entry["file"] for entry in report["dropped"]} >= set(expected)
    assert report["reasons"]["bad label"] == 1 and summary["kept"] == len(load_manifest(manifest))
    logged = {item.path for item in run.client.list_artifacts(run.run_id, "data")}
    assert "data/report.json" in logged
    assert run.client.get_run(run.run_id).data.params["dataset_dropped"] == str(len(report["dropped"]))


def test_a_category_is_refused_only_when_too_little_remains(home: Settings) -> None:
    meta = tiny_meta(home)
    keep = meta[meta["class"].isin(TINY_CLASSES[:2])]
    (home.objects_dir / "datasets" / TINY / "meta.csv").write_text(keep.to_csv(), encoding="utf-8")
    assert visearch(home, "check", TINY).returncode == 0  # two classes: enough
    result = visearch(home, "check", TINY, extra_env={"VISEARCH_MIN_CLASSES": "3"})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    assert lines[0].startswith("error: category 'tiny' cannot be trained and evaluated: 2 class(es)")
    assert "3 needed (VISEARCH_MIN_CLASSES)" in lines[0] and "add images of more classes" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"file;class;label\na.png;x;0\n", "separated by ';'; save the file with commas"),
        (b",file,label\n0,a.png,0\n", "lacks column(s) class"),
        (",file,class,label\n0,caf\xe9.png,x,0\n".encode("latin-1"), "not UTF-8 text"),
        (b"\n\n", "is empty"),
    ],
)
def test_header_problems_are_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_meta(data)


def test_prepare_folder_keeps_the_good_rows_of_a_meta_with_bad_ones(home: Settings, tmp_path: Path) -> None:
    source = tmp_path / "mine"
    (source / "images").mkdir(parents=True)
    rows = []
    for cls, label in (("red", 0), ("blue", 1), ("green", 2)):
        for i in range(4):
            (source / "images" / f"{cls}{i}.png").write_bytes(png(colour=40 * label + 10 * i + 20))
            rows.append({"file": f"{cls}{i}.png", "class": cls, "label": label})
    rows += [{"file": "x.png", "class": "red", "label": "zero"}, {"file": "y.png", "class": "", "label": 0}]
    pd.DataFrame(rows).to_csv(source / "meta.csv")
    result = visearch(home, "prepare", "folder", "--source", str(source), "--category", TINY)
    assert result.returncode == 0, result.stderr
    assert "bad label" in result.stdout and "empty class" in result.stdout
    assert len(tiny_meta(home)) == 12


def test_check_rows_keeps_types_of_captions_and_reports_each_row() -> None:
    frame = parse_meta(b",file,class,label,price\n0,a.png,x,0,1.5\n1,b.png,x,x1,2\n2,c.png,y,1,\n")
    report = DataReport()
    kept = check_rows(frame, report)
    assert kept["file"].tolist() == ["a.png", "c.png"] and kept["label"].tolist() == [0, 1]
    assert kept["price"].iloc[0] == 1.5 and pd.isna(kept["price"].iloc[1])
    assert report.dropped == [("b.png", "bad label: 'x1' is not an integer")]


# --- 3. no traceback, whatever the order ------------------------------------------------------
def test_every_command_out_of_order_or_on_bad_input_prints_one_error_line(home: Settings, tmp_path: Path) -> None:
    """Every command of `visearch --help` in states a new user reaches: one `error:` line, exit != 0."""
    image = tmp_path / "query.png"
    image.write_bytes(png())
    calls = [
        ("preprocess", "-c", "nope"),
        ("check", "nope"),
        ("train", "-c", TINY),  # before preprocess
        ("evaluate", "-c", TINY),
        ("embed", "-c", TINY),
        ("upsert", "-c", TINY),
        ("search", str(image), "-c", TINY),  # no index yet
        ("search", str(tmp_path / "missing.png"), "-c", TINY),
        ("search", str(image), "-c", TINY, "-k", "0"),
        ("index", "rollback", "-c", TINY),
        ("index", "status", "-c", "nope"),
        ("train", "-c", TINY, "--embedder-layers", "a,b"),
        ("embed", "-c", TINY, "--manifest", str(tmp_path / "nowhere")),
        ("prepare", "folder", "--source", str(tmp_path / "nowhere"), "--category", TINY),
        ("pipeline", "run", "--categories", "nope"),
        ("pipeline", "compile", "-o", "/proc/visearch.yaml"),
        ("demo", "--no-serve"),  # MLflow down, below
        ("categories",),  # the object store down, below
    ]
    down = {
        "demo": {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
        "categories": {"MINIO_HOST": "127.0.0.1:9", "MINIO_SECURE": "false"},
    }
    for call in calls:
        result = visearch(home, *call, extra_env=down.get(call[0]))
        assert result.returncode != 0, (call, result.stdout)
        assert "Traceback" not in result.stdout + result.stderr, (call, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (call, result.stderr[-2000:])
    # in order: after preprocess only, embed says what to run
    assert visearch(home, "preprocess", "-c", TINY).returncode == 0
    result = visearch(home, "embed", "-c", TINY)
    assert result.returncode == 1 and "error: no model in" in result.stderr


# --- 4. content, not names ------------------------------------------------------------------
def test_a_replaced_image_changes_the_data_version_an_unchanged_one_does_not(home: Settings) -> None:
    from visearch.stages.preprocess import check_data

    registry = load_registry(home.visearch_categories)
    store = LocalStore(home.objects_dir)
    first, _ = check_data(home, store, registry.get(TINY), show_progress=False)
    again, _ = check_data(home, store, registry.get(TINY), show_progress=False)
    assert manifest_hash(first) == manifest_hash(again)
    victim = str(first["key"].iloc[3])
    data = store.get_bytes(victim)
    image = Image.open(io.BytesIO(data)).convert("L")
    out = io.BytesIO()
    Image.eval(image, lambda value: 255 - value).save(out, format="PNG")
    store.put_bytes(victim, out.getvalue())  # same file name, other pixels
    replaced, _ = check_data(home, store, registry.get(TINY), show_progress=False)
    assert manifest_hash(replaced) != manifest_hash(first)
    assert (replaced["digest"] != first["digest"]).sum() == 1


# --- 5. every step resumes --------------------------------------------------------------------
def test_training_resumed_from_the_store_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import run_train

    settings = make_home(tmp_path / "home")
    store = LocalStore(settings.objects_dir)
    category = load_registry(settings.visearch_categories).get(TINY)
    manifest, _ = run_preprocess(settings, store, category, tmp_path / "manifest", show_progress=False)
    params = category.train.model_copy(update={"epochs": 2, "max_steps": None})  # whole epochs
    whole = run_train(settings, store, manifest.parent, params, tmp_path / "whole", show_progress=False, onnx=False)
    key = "checkpoints/tiny/test/checkpoint.pt"
    first = params.with_overrides({"epochs": 1})
    run_train(
        settings, store, manifest.parent, first, tmp_path / "pod-1", show_progress=False, onnx=False, checkpoint_key=key
    )
    assert store.exists(key)  # the first pod dies here; its scratch folder is gone with it
    resumed = run_train(
        settings,
        store,
        manifest.parent,
        params,
        tmp_path / "pod-2",
        show_progress=False,
        onnx=False,
        checkpoint_key=key,
    )
    assert resumed.epoch_losses[0] == pytest.approx(whole.epoch_losses[0])
    assert resumed.version == whole.version  # same weights: the resumed run did not start over
    fresh = run_train(settings, store, manifest.parent, params, tmp_path / "fresh", show_progress=False, onnx=False)
    assert fresh.version == whole.version  # deterministic, so the equality above is meaningful
    state = torch.load(tmp_path / "pod-2" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 2


def test_a_stale_embedding_marker_never_passes_for_other_data(indexed_home: Settings, tmp_path: Path) -> None:
    from visearch.embed import embed_to_shards, read_shards
    from visearch.model import load_model

    work = indexed_home.work_dir / TINY
    manifest = load_manifest(work / "manifest")
    model = load_model(work / "champion")
    paths = [indexed_home.objects_dir / key for key in manifest["key"]]
    keys = manifest["key"].tolist()
    out = tmp_path / "emb"
    embed_to_shards(model, keys, paths, out, show_progress=False)
    other = [*keys[1:], keys[0]]  # same model, same count, other order: the old marker must not pass
    embed_to_shards(model, other, [*paths[1:], paths[0]], out, show_progress=False)
    found, vectors, _ = read_shards(out)
    assert found == other
    assert np.allclose(vectors[-1], read_shards(work / "embeddings")[1][0], atol=1e-5)


# --- 6. rollback sticks, history is kept tidy --------------------------------------------------
def test_rollback_moves_the_champion_and_retention_deletes_old_models(tmp_path: Path) -> None:
    from visearch.admin import rollback
    from visearch.gate import register_candidate
    from visearch.index import open_index
    from visearch.model import store_key
    from visearch.stages.embed import run_embed
    from visearch.stages.in_process import run_in_process
    from visearch.stages.train import run_train
    from visearch.stages.upsert import run_upsert
    from visearch.tracking import Tracker

    settings = make_home(tmp_path / "home")
    store = LocalStore(settings.objects_dir)
    category = load_registry(settings.visearch_categories).get(TINY)
    versions = [run_in_process(settings, store, category, show_progress=False).collection]
    tracker = Tracker.from_settings(settings)
    manifest = settings.work_dir / TINY / "manifest"
    registered = {}
    for layers in ([24], [40]):  # two more models, each registered in MLflow and indexed
        params = category.train.with_overrides({"embedder_layers": layers})
        run = tracker.run(tracker.start_run(TINY))
        trained = run_train(
            settings, store, manifest, params, tmp_path / f"train-{layers[0]}", show_progress=False, run=run
        )
        registered[trained.version] = register_candidate(tracker, run, TINY, "tuned", trained.model_dir)
        embeddings = run_embed(
            settings, store, category, manifest, trained.model_dir, tmp_path / f"emb-{layers[0]}", show_progress=False
        )
        versions.append(run_upsert(settings, store, category, manifest, trained.model_dir, embeddings).collection)
    assert len(set(versions)) == 3
    index = open_index(settings)
    try:
        assert [v.name for v in index.versions(TINY)] == versions[1:]  # keep_index_versions = 2
        first_model = model_of(versions[0])
        assert not list(store.list(store_key(TINY, first_model)))  # the dropped version's model is gone too
        second_model = model_of(versions[1])
        assert list(store.list(store_key(TINY, second_model)))
        result = rollback(index, TINY, to=versions[1], tracker=tracker)
        live = index.live(TINY)
        assert live is not None and live.name == versions[1]
        champion = tracker.champion(TINY)
        assert champion is not None and champion.model_version == second_model
        assert result["champion"] == registered[second_model] == champion.registry_version
        third_model = model_of(versions[2])
        assert tracker.rejected(TINY) == {third_model}  # the gate will not promote it again
        with pytest.raises(Exception, match="no index version"):
            rollback(index, TINY, to=versions[0], tracker=tracker)
    finally:
        index.close()


def model_of(collection: str) -> str:
    """The model version a collection name carries."""
    parsed = CollectionVersion.parse(collection)
    assert parsed is not None, collection
    return parsed.model_version


# --- 7. small classes ---------------------------------------------------------------------------
def test_two_images_per_class_trains_and_is_evaluated_class_disjoint(tmp_path: Path) -> None:
    settings = make_home(tmp_path / "home")
    meta = tiny_meta(settings)
    two = meta.groupby("class").head(2).reset_index(drop=True)
    (settings.objects_dir / "datasets" / TINY / "meta.csv").write_text(two.to_csv(), encoding="utf-8")
    check = visearch(settings, "check", TINY)
    assert check.returncode == 0, check.stderr
    assert "evaluation: class-disjoint (no in-domain: the largest training class has 2 image(s)" in check.stdout
    from visearch.stages.in_process import run_in_process

    category = load_registry(settings.visearch_categories).get(TINY)
    assert category.train.sampler_m == 2
    wider = category.model_copy(update={"train": category.train.with_overrides({"sampler_m": 4})})
    outcome = run_in_process(settings, LocalStore(settings.objects_dir), wider, show_progress=False)
    assert set(outcome.metrics["tuned"]) == {"version", "images", "class_disjoint"}  # no in-domain: 2 images a class
    assert "class-disjoint" in outcome.reason
