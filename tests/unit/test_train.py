"""Training resumes: a longer run continues from the checkpoint, a killed run from its last one.

With validation rows, every epoch logs its validation MAP@R to MLflow as step metrics, the best
epoch's weights are the ones saved, and patience stops training early.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import TINY, env_for, kill9, wait_until
from visearch.data.checks import VALIDATION, VALIDATION_CLASS
from visearch.data.manifest import MANIFEST, image_paths, load_manifest
from visearch.model import load_model
from visearch.settings import Settings
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import run_train
from visearch.tracking import Tracker
from visearch.train import Metrics, TrainResult, train

MAP_R = "mean_average_precision_at_r"


def with_validation(home: Settings, registry, store, work: Path) -> Path:  # type: ignore[no-untyped-def]
    """The tiny manifest with two images of each training class and both test classes set aside for validation."""
    run_preprocess(home, store, registry.get(TINY), work, show_progress=False)
    manifest = load_manifest(work)
    for _cls, rows in manifest[manifest["split"] == "train"].groupby("class"):
        manifest.loc[rows.index[:2], "split"] = VALIDATION
    manifest.loc[manifest["split"] == "test", "split"] = VALIDATION_CLASS
    manifest.to_csv(work / MANIFEST, index=False)
    return work


def test_each_epoch_logs_validation_curves_and_the_best_epoch_is_kept(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    manifest_dir = with_validation(home, registry, store, work / "manifest")
    params = registry.get(TINY).train.model_copy(update={"max_steps": None, "epochs": 3, "patience": 0})
    tracker = Tracker.from_settings(home)
    run = tracker.run(tracker.start_run(TINY))
    result = run_train(
        home,
        store,
        manifest_dir,
        params,
        work / "train",
        show_progress=False,
        onnx=False,
        run=run,
    )
    history = {
        name: [(m.step, m.value) for m in tracker.client.get_metric_history(run.run_id, f"val.{name}.{MAP_R}")]
        for name in ("in_domain", "class_disjoint")
    }
    assert [step for step, _ in history["in_domain"]] == [0, 1, 2]
    assert [step for step, _ in history["class_disjoint"]] == [0, 1, 2]
    scores = [(a + b) / 2 for (_, a), (_, b) in zip(history["in_domain"], history["class_disjoint"], strict=True)]
    assert result.best_epoch == scores.index(max(scores))
    logged = tracker.client.get_run(run.run_id).data.metrics
    assert logged["best_epoch"] == result.best_epoch and logged["epochs_run"] == 3
    best = torch.load(work / "train" / "checkpoint.pt", map_location="cpu", weights_only=False)["best"]
    assert best["epoch"] == result.best_epoch
    saved = load_model(result.model_dir).state_dict()
    assert all(torch.equal(saved[name], best["model"][name]) for name in saved)
    assert [round(r["in_domain"][MAP_R], 4) for r in result.validation] == [
        round(v, 4) for _, v in history["in_domain"]
    ]


def scripted(scores: list[float], start: int = 0):  # type: ignore[no-untyped-def]
    """A validator that scores epoch ``start``, ``start + 1``, ... with ``scores`` (to choose the best epoch)."""
    epoch = iter(range(start, len(scores)))

    def validate(model) -> Metrics:  # type: ignore[no-untyped-def]
        return {"in_domain": {MAP_R: scores[next(epoch)]}}

    return validate


def train_tiny(
    home: Settings, registry, store, out: Path, scores: list[float], start: int = 0, **update
) -> TrainResult:  # type: ignore[no-untyped-def]
    manifest = load_manifest(home.work_dir / TINY / "manifest")
    rows = manifest[manifest["split"] == "train"].reset_index(drop=True)
    params = registry.get(TINY).train.model_copy(update={"max_steps": None, **update})
    ran: list[int] = []
    np.random.seed(params.seed)  # as run_train does: the sampler draws from NumPy's global RNG
    result = train(
        rows,
        image_paths(store, home, rows["key"].tolist()),
        params,
        out,
        validate=scripted(scores, start),
        on_epoch=lambda epoch, loss: ran.append(epoch),
        show_progress=False,
    )
    result.epoch_losses = ran  # the epochs this call ran
    return result


def test_patience_stops_early_keeps_the_best_weights_and_resumes_exactly(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    run_preprocess(home, store, registry.get(TINY), home.work_dir / TINY / "manifest", show_progress=False)
    scores = [0.3, 0.5, 0.4, 0.2, 0.6, 0.1]
    whole = train_tiny(home, registry, store, home.work_dir / "whole", scores, epochs=6, patience=2)
    assert whole.epoch_losses == [0, 1, 2, 3]  # epoch 1 was best; 2 and 3 did not beat it: stop
    assert (whole.best_epoch, whole.stopped_early) == (1, True)
    best = torch.load(home.work_dir / "whole" / "checkpoint.pt", weights_only=False)["best"]
    saved = load_model(whole.model_dir).state_dict()
    assert all(torch.equal(saved[name], best["model"][name]) for name in saved)

    # Killed after epoch 2, resumed: the same epochs, the same kept weights as the uninterrupted run.
    cut = home.work_dir / "cut"
    train_tiny(home, registry, store, cut, scores, epochs=2, patience=2)
    resumed = train_tiny(home, registry, store, cut, scores, start=2, epochs=6, patience=2)
    assert resumed.epoch_losses == [2, 3] and resumed.best_epoch == 1 and resumed.stopped_early
    assert resumed.version == whole.version

    # More patience continues the run that stopped (patience is not part of the run's identity).
    longer = train_tiny(home, registry, store, home.work_dir / "whole", scores, start=4, epochs=6, patience=3)
    assert longer.epoch_losses == [4, 5] and longer.best_epoch == 4 and longer.version != whole.version


def test_longer_training_continues_from_the_checkpoint(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    params = registry.get(TINY).train.model_copy(update={"max_steps": None, "epochs": 1})
    first = run_train(home, store, work / "manifest", params, work / "train", show_progress=False, onnx=False)
    epochs_run: list[int] = []
    longer = params.model_copy(update={"epochs": 2})
    second = run_train(
        home,
        store,
        work / "manifest",
        longer,
        work / "train",
        show_progress=False,
        onnx=False,
        on_epoch=lambda epoch, loss: epochs_run.append(epoch),
    )
    assert epochs_run == [1]  # only the missing epoch ran
    assert second.epoch_losses[0] == first.epoch_losses[0] and len(second.epoch_losses) == 2


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    command = [sys.executable, "-m", "visearch.cli", "train", "-c", TINY, "--max-steps", "100000"]
    process = subprocess.Popen(
        [*command, "--epochs", "500"], env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    # The step's scratch (TrainingNames): one folder per params identity and data.
    def checkpoints() -> list[Path]:
        return list((work / "train-scratch").glob("*/checkpoint.pt"))

    wait_until(lambda: bool(checkpoints()), timeout=240)
    kill9(process)
    (checkpoint,) = checkpoints()
    import torch

    done = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    rerun = subprocess.run(
        [*command, "--epochs", str(done + 1)], env=env_for(home), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming training from epoch {done}" in rerun.stderr
    assert (work / "train" / "model" / "meta.json").exists()


def test_sample_per_class_samples_per_class_in_order_and_keeps_small_classes_whole() -> None:
    import pandas as pd

    from visearch.data.manifest import sample_per_class

    rows = pd.DataFrame({"key": [f"k{i}" for i in range(12)], "label": [0] * 8 + [1] * 3 + [2]})
    sampled = sample_per_class(rows, 3, seed=0)
    assert sampled["label"].value_counts().to_dict() == {0: 3, 1: 3, 2: 1}
    assert sampled["key"].tolist() == sorted(sampled["key"].tolist(), key=lambda key: int(key[1:]))
    assert sampled.equals(sample_per_class(rows, 3, seed=0)) and not sampled.equals(sample_per_class(rows, 3, seed=1))
    assert sample_per_class(rows, None) is rows


def test_training_budget_trains_on_a_sample_and_is_part_of_the_identity(home: Settings, registry, store) -> None:  # type: ignore[no-untyped-def]
    work = home.work_dir / TINY
    run_preprocess(home, store, registry.get(TINY), work / "manifest", show_progress=False)
    manifest = load_manifest(work / "manifest")
    available = manifest[manifest["split"] == "train"]
    classes = available["label"].nunique()
    params = registry.get(TINY).train.model_copy(update={"max_steps": 1, "epochs": 1, "train_images_per_class": 2})
    tracker = Tracker.from_settings(home)
    run = tracker.run(tracker.start_run(TINY))
    run_train(home, store, work / "manifest", params, work / "train", show_progress=False, onnx=False, run=run)
    logged = tracker.client.get_run(run.run_id).data.params
    assert int(logged["train_images"]) == 2 * classes < len(available)
    assert int(logged["train_images_available"]) == len(available)
    assert logged["train_images_per_class"] == "2"
    # The budget shapes the weights (part of the identity); no budget keeps the identity of before.
    unbudgeted = params.model_copy(update={"train_images_per_class": None})
    assert params.identity() != unbudgeted.identity()
    # The evaluation budget only picks the images that score the model: no part of the identity.
    assert params.model_copy(update={"eval_images_per_class": 7}).identity() == params.identity()
    before = {"epochs", "patience", "max_steps", "accelerator", "train_images_per_class", "eval_images_per_class"}
    text = json.dumps(unbudgeted.model_dump(exclude=before), sort_keys=True)
    assert unbudgeted.identity() == hashlib.sha256(text.encode()).hexdigest()[:12]
