"""The upsert component: the live collection it returns and records (``collection``, ``points``, ``reused``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.components.fakes import FakeArtifact, FakeMetrics
from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS, live_state
from visearch.settings import Settings
from visearch.tracking import Tracker


def test_upsert_records_the_live_collection_and_its_points(
    steps: Any, step_home: Settings, indexed_home: Settings, tmp_path: Path
) -> None:
    work = indexed_home.work_dir / TINY  # read only: manifest, champion, embeddings; the index written is step_home's
    tracker = Tracker.from_settings(step_home)

    def upsert(run_id: str, index: FakeMetrics) -> str:
        return steps.upsert.python_func(
            category=TINY,
            manifest=FakeArtifact(work / "manifest"),
            model=FakeArtifact(work / "champion"),
            embeddings=[FakeArtifact(work / "embeddings")],  # dsl.Collected: one per embed shard
            run_id=run_id,
            index=index,
        )

    run_id, index = tracker.start_run(TINY), FakeMetrics(tmp_path / "index")
    collection = upsert(run_id, index)
    points = len(TINY_CLASSES) * TINY_PER_CLASS
    assert index.metrics == {"points": points, "reused": 0.0}
    assert index.metadata == {"collection": collection, "previous": ""}
    live, versions = live_state(step_home)
    assert live is not None and live.name == collection and [v.name for v in versions] == [collection]
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["index.collection"] == collection

    # The same model and data again: the live collection is reused as is.
    again = FakeMetrics(tmp_path / "again")
    assert upsert(tracker.start_run(TINY), again) == collection
    assert again.metrics == {"points": points, "reused": 1.0}
    assert again.metadata == {"collection": collection, "previous": collection}
