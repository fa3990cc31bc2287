"""Training resumes: a longer run continues from the checkpoint, a killed run from its last one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import TINY, env_for, kill9, wait_until
from visearch.settings import Settings
from visearch.steps import run_preprocess, run_train


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
    checkpoint = work / "train" / "checkpoint.pt"
    wait_until(checkpoint.exists, timeout=240)
    kill9(process)
    import torch

    done = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    rerun = subprocess.run(
        [*command, "--epochs", str(done + 1)], env=env_for(home), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming training from epoch {done}" in rerun.stderr
    assert (work / "train" / "model" / "meta.json").exists()
