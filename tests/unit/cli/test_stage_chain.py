"""The five step commands chain as the pipeline's steps do, through the same stages: parameters given to
`preprocess` reach training, a second `train` reuses the model, `evaluate` runs the gate and hands its
choice to `embed` and `upsert`."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY, copy_home
from tests.unit.cli.runs import visearch
from visearch.model import read_spec
from visearch.settings import Settings


@pytest.mark.slow
def test_the_step_commands_run_the_pipelines_stages(indexed_home: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = copy_home(indexed_home, tmp_path / "home")
    work = home.work_dir / TINY
    done = visearch(home, "preprocess", "-c", TINY, "--embedder-layers", "24", "--max-steps", "2", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "manifest" / "params.json").read_text())["embedder_layers"] == [24]

    first = visearch(home, "train", "-c", TINY)
    assert first.returncode == 0, first.stderr
    model = read_spec(work / "train" / "model")
    assert model.embedder_layers == [24]  # what preprocess resolved
    assert (work / "baseline" / "meta.json").is_file()  # the gate's second candidate
    again = visearch(home, "train", "-c", TINY)
    assert again.returncode == 0, again.stderr
    assert f"model {model.version} reused" in again.stdout  # same data, same params: no second training

    gated = visearch(home, "evaluate", "-c", TINY)
    assert gated.returncode == 0, gated.stderr
    assert "gate: " in gated.stdout and "champion" in gated.stdout  # the indexed home has a champion to beat
    report = json.loads((work / "evaluation" / "report.json").read_text())
    assert {"tuned", "baseline", "champion", "gate"} <= set(report)
    chosen = read_spec(work / "champion").version
    assert chosen in {report[name]["version"] for name in ("tuned", "baseline", "champion")}

    assert visearch(home, "embed", "-c", TINY).returncode == 0
    indexed = visearch(home, "upsert", "-c", TINY)
    assert indexed.returncode == 0, indexed.stderr
    assert f"-{chosen}-" in indexed.stdout  # the collection is named by the model the gate chose
