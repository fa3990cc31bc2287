"""`visearch prepare <dataset>`: the commands end to end on native-layout fixtures, in a fresh home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import env_for
from tests.unit.data.datasets import make_dogs, make_image_folder, make_packages, make_zappos
from visearch.cli.prepare import prepare_app
from visearch.data.demo import demo_source
from visearch.settings import Settings


@pytest.fixture
def cli(home: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A runner whose commands use the test home (and no .env or service settings of the machine)."""
    for key in list(os.environ):
        if key.startswith(("QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VISEARCH_HOME", str(home.home))
    monkeypatch.setenv("VISEARCH_CATEGORIES", str(home.visearch_categories))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def dataset(home: Settings, name: str) -> pd.DataFrame:
    return pd.read_csv(home.objects_dir / "datasets" / name / "meta.csv", index_col=0)


def test_prepare_shoes_reports_and_dedupes(cli: CliRunner, home: Settings, tmp_path: Path) -> None:
    source = make_zappos(tmp_path / "zappos")
    result = cli.invoke(prepare_app, ["shoes", "--source", str(source), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "shoes: 13 images kept in 3 classes, 2 dropped" in result.output
    assert "1 duplicate images in 1 groups (1 exact)" in result.output
    assert len(dataset(home, "shoes")) == 13
    saved = json.loads((home.objects_dir / "datasets" / "shoes" / "prepare_report.json").read_text())
    assert saved == json.loads((tmp_path / "r.json").read_text()) and saved["reasons"]["unreadable image"] == 1
    result = cli.invoke(prepare_app, ["shoes", "--source", str(source), "--dedupe", "--limit", "100"])
    assert result.exit_code == 0, result.output
    assert "duplicate: exact copy of" in result.output and len(dataset(home, "shoes")) == 12


def test_prepare_dogs_crop_into_another_category(cli: CliRunner, home: Settings, tmp_path: Path) -> None:
    source = make_dogs(tmp_path / "stanford")
    result = cli.invoke(prepare_app, ["dogs", "--source", str(source), "--crop", "--category", "tiny"])
    assert result.exit_code == 0, result.output
    assert "bad annotation XML" in result.output and "box outside the image" in result.output
    meta = dataset(home, "tiny")
    assert meta["file"].str.endswith("_0.jpg").sum() == 3 and set(meta["class"]) == {"Chihuahua", "Japanese spaniel"}


def test_prepare_logo_icons(cli: CliRunner, home: Settings, tmp_path: Path) -> None:
    source = make_packages(tmp_path / "node_modules")
    result = cli.invoke(prepare_app, ["logos-icons", "--source", str(source), "--size", "48", "--category", "logos"])
    assert result.exit_code == 0, result.output
    assert dataset(home, "logos").groupby("class").size().min() >= 5


def test_prepare_folder_keeps_labels(cli: CliRunner, home: Settings) -> None:
    result = cli.invoke(prepare_app, ["folder", "--source", str(demo_source()), "--category", "tiny"])
    assert result.exit_code == 0, result.output
    original = pd.read_csv(demo_source() / "meta.csv", index_col=0)
    assert dataset(home, "tiny")[["file", "class", "label"]].equals(original[["file", "class", "label"]])


def test_prepare_folder_of_class_folders(cli: CliRunner, home: Settings, tmp_path: Path) -> None:
    source = make_image_folder(tmp_path / "download")
    result = cli.invoke(prepare_app, ["folder", "--source", str(source), "-c", "tiny", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "folder: 11 images kept in 3 classes, 2 dropped (of 13 considered)" in result.output
    assert "dropped paper/notes.txt: not an image file" in result.output
    meta = dataset(home, "tiny")
    assert list(meta.columns) == ["file", "class", "label"] and sorted(set(meta["label"])) == [0, 1, 2]
    assert json.loads((tmp_path / "r").read_text())["reasons"] == {"unreadable image": 1, "not an image file": 1}


def test_whole_run_failure_is_one_message(home: Settings, tmp_path: Path) -> None:
    """Through the real entry point: a missing source is one `error:` line and exit code 1."""
    env = env_for(home)
    command = [sys.executable, "-c", "from visearch.cli import main; main()"]
    result = subprocess.run(
        [*command, "prepare", "celebrities", "--source", str(tmp_path / "nope")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: IMDB-WIKI source folder not found: {tmp_path / 'nope'}"


@pytest.mark.skipif(
    not (Path("/usr/share/datasets/fashion-mnist") / "t10k-images-idx3-ubyte.gz").exists(),
    reason="needs apt package dataset-fashion-mnist",
)
def test_a_large_category_without_a_training_budget_gets_a_note(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import visearch.cli.prepare as prepare_module

    monkeypatch.setattr(prepare_module, "LARGE_CATEGORY", 20)  # 30 images stand for tens of thousands
    result = cli.invoke(prepare_app, ["fashion-mnist", "--per-class", "3"])
    assert result.exit_code == 0, result.output
    note = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "with 30 images, a training budget" in note[0]
    assert note[0].endswith("-c fashion-mnist-full")
    # The full set's entry has a budget: nothing to say.
    result = cli.invoke(prepare_app, ["fashion-mnist", "--per-class", "3", "-c", "fashion-mnist-full"])
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    monkeypatch.setattr(prepare_module, "LARGE_CATEGORY", 30)  # past it, not at it
    assert "note:" not in cli.invoke(prepare_app, ["fashion-mnist", "--per-class", "3"]).output
