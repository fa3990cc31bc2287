"""Rollback and the gate on a real MLflow store (SQLite) and a real embedded index.

A rollback moves the ``champion`` alias back with the index alias and marks the model it rolled
back from as rejected; the gate's next run must read that mark from MLflow and never promote the
model again, even when it is the best candidate (a re-run that trains the same weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY, make_home
from visearch import admin
from visearch.categories import load_registry
from visearch.gate import CURRENT, FROZEN, PRIMARY, TUNED, register_candidate
from visearch.index import open_index, point_id
from visearch.model import read_spec
from visearch.settings import Settings
from visearch.stages.evaluate import evaluate_and_gate
from visearch.stages.preprocess import run_preprocess
from visearch.stages.train import save_baseline
from visearch.storage import LocalStore
from visearch.tracking import Tracker


@dataclass
class RolledBack:
    """A home whose champion was the pretrained trunk, rolled back to a worse model that served before it."""

    settings: Settings
    tracker: Tracker
    manifest: Path
    better: Path  # the model rolled back from (pretrained trunk)
    worse: Path  # the model served again (random trunk)
    result: dict[str, object]


def random_model(directory: Path, input_size: int) -> Path:
    """A randomly initialised trunk with a 4-d head: far worse than the pretrained one, deterministic."""
    import torch

    from visearch.model import EmbeddingModel, ModelSpec, build_embedder, build_trunk, save_model, trunk_output_dim

    torch.manual_seed(0)
    trunk = build_trunk("efficientnet-lite0", pretrained=False)
    spec = ModelSpec("efficientnet-lite0", [4], input_size, trunk_output_dim(trunk, input_size))
    model = EmbeddingModel(trunk, build_embedder(spec.trunk_dim, [4]), spec)
    model.eval()
    return save_model(model, directory)


@pytest.fixture
def rolled_back(tmp_path: Path) -> RolledBack:
    """Served first: the worse model; then the better one (champion, live); then ``admin.rollback``."""
    settings = make_home(tmp_path / "home")
    store = LocalStore(settings.objects_dir)
    category = load_registry(settings.visearch_categories).get(TINY)
    work = settings.work_dir / "rollback-test"
    manifest, _ = run_preprocess(settings, store, category, work / "manifest", show_progress=False)
    worse = random_model(work / "worse", category.train.input_size)
    better = save_baseline(category.train, work / "better")

    tracker = Tracker.from_settings(settings)
    run = tracker.run(tracker.start_run(TINY))
    index = open_index(settings)
    try:
        for name, model in ((TUNED, worse), (FROZEN, better)):  # oldest first; each promoted in its turn
            registered = register_candidate(tracker, run, TINY, name, model)
            tracker.set_champion(TINY, registered)
            version = index.create(TINY, read_spec(model).version, "d1", 4)
            index.upsert(version.name, [point_id(TINY, "a.png")], np.ones((1, 4), "float32"), [{"class": "A"}])
            index.seal(version.name)
            index.swap_alias(TINY, version.name)
        result = admin.rollback(index, TINY, tracker=tracker)
        assert index.require_live(TINY).model_version == read_spec(worse).version
    finally:
        index.close()
    return RolledBack(settings, tracker, manifest, better, worse, result)


def test_rollback_moves_the_champion_and_rejects_the_model_rolled_back_from(rolled_back: RolledBack) -> None:
    tracker, worse, better = (
        rolled_back.tracker,
        read_spec(rolled_back.worse).version,
        read_spec(rolled_back.better).version,
    )
    champion = tracker.champion(TINY)
    assert champion is not None and champion.model_version == worse
    assert rolled_back.result["champion"] == champion.registry_version == tracker.find_version(TINY, worse)
    assert rolled_back.result["note"] == ""
    assert tracker.rejected(TINY) == frozenset({better})
    # Read back through a second client on the same store: the marks are in MLflow, not in this object.
    again = Tracker.from_settings(rolled_back.settings)
    assert again.champion(TINY) == champion and again.rejected(TINY) == frozenset({better})


def test_the_gate_never_promotes_a_model_a_rollback_rejected(rolled_back: RolledBack) -> None:
    settings, tracker = rolled_back.settings, rolled_back.tracker
    champion = tracker.champion(TINY)
    assert champion is not None
    category = load_registry(settings.visearch_categories).get(TINY)
    work = settings.work_dir / "rerun"
    run = tracker.run(tracker.start_run(TINY))
    # The re-run brings the rejected model back as its best candidate: no rejected= is passed here,
    # the gate must read the mark from MLflow itself.
    outcome = evaluate_and_gate(
        settings,
        LocalStore(settings.objects_dir),
        category,
        rolled_back.manifest,
        {TUNED: rolled_back.better, FROZEN: rolled_back.better},
        work / "report",
        work / "champion",
        tracker=tracker,
        run=run,
        show_progress=False,
    )
    report, decision = outcome.report, outcome.decision
    evaluation = decision.evaluation
    # Better than the champion it would replace: only the rollback's mark keeps it out.
    assert report[TUNED][evaluation][PRIMARY] > report[CURRENT][evaluation][PRIMARY]
    assert report[CURRENT]["version"] == champion.model_version == read_spec(rolled_back.worse).version
    assert decision.promoted is None and decision.serve == CURRENT and decision.eligible == []
    assert "rolled back from: not promoted again" in decision.reason
    assert tracker.champion(TINY) == champion
    assert outcome.champion_version == champion.model_version
    assert tracker.client.get_run(run.run_id).data.tags["gate.decision"] == "kept"
