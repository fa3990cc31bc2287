"""``admin.rollback`` with a real MLflow registry (SQLite): the champion moves with the alias (fast).

The models are registered from small stand-in files (the registry stores files, it never loads
them), so a rollback's effect on MLflow is checked in about a second; tests/unit/test_gate_rollback.py
then runs the gate on real models after a rollback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visearch import admin
from visearch.index import VectorIndex, point_id
from visearch.index.edge import EdgeBackend
from visearch.model import copy_model
from visearch.settings import Settings
from visearch.tracking import REJECTED_TAG, VERSION_TAG, Tracker, model_name


def registered(tracker: Tracker, tmp_path: Path, category: str, versions: list[str]) -> dict[str, str]:
    """Register one stand-in model per visearch model version; model version -> registry version."""
    run = tracker.run(tracker.start_run(category))
    found = {}
    for version in versions:
        model = tmp_path / "models" / version
        model.mkdir(parents=True)
        (model / "meta.json").write_text(f'{{"version": "{version}"}}')
        (model / "trunk.pth").write_bytes(b"trunk")
        (model / "embedder.pth").write_bytes(b"embedder")
        copy_model(model, tmp_path / "logged" / version / "artifacts")
        model_id = tracker.log_model(run.run_id, "model", tmp_path / "logged" / version, {VERSION_TAG: version})
        found[version] = tracker.register(category, run.run_id, model_id, version)
    return found


def served(index: VectorIndex, category: str, versions: list[tuple[str, str]]) -> list[str]:
    """Index versions (model, data) made live one after the other; their names, oldest first."""
    names = []
    for model, data in versions:
        version = index.create(category, model, data, 4)
        index.upsert(version.name, [point_id(category, "a.png")], np.ones((1, 4), "float32"), [{"class": "A"}])
        index.seal(version.name)
        index.swap_alias(category, version.name)
        names.append(version.name)
    return names


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One MLflow store for the module (creating one takes seconds); each test has its own category."""
    home = tmp_path_factory.mktemp("admin-rollback") / "home"
    return Tracker.from_settings(Settings(visearch_home=home, _env_file=None))


@pytest.fixture
def index(tmp_path: Path) -> VectorIndex:
    index = VectorIndex(EdgeBackend(tmp_path / "index"))
    yield index  # type: ignore[misc]
    index.close()


def reason(tracker: Tracker, category: str, registry_version: str) -> str | None:
    return tracker.client.get_model_version(model_name(category), registry_version).tags.get(REJECTED_TAG)


def test_rollback_moves_the_champion_to_the_served_model_and_rejects_the_one_left(
    tracker: Tracker, index: VectorIndex, tmp_path: Path
) -> None:
    models = registered(tracker, tmp_path, "roll1", ["m1", "m2"])
    tracker.set_champion("roll1", models["m2"])
    old, new = served(index, "roll1", [("m1", "d1"), ("m2", "d1")])

    result = admin.rollback(index, "roll1", tracker=tracker)

    assert result == {"category": "roll1", "live": old, "previous": new, "champion": models["m1"], "note": ""}
    assert index.require_live("roll1").name == old
    champion = tracker.champion("roll1")
    assert champion is not None and champion.model_version == "m1"
    assert tracker.rejected("roll1") == frozenset({"m2"})
    assert reason(tracker, "roll1", models["m2"]) == f"rolled back to {old}"
    assert reason(tracker, "roll1", models["m1"]) is None


def test_rolling_back_a_data_change_keeps_the_model_in_service(
    tracker: Tracker, index: VectorIndex, tmp_path: Path
) -> None:
    models = registered(tracker, tmp_path, "roll2", ["m1"])
    tracker.set_champion("roll2", models["m1"])
    old, new = served(index, "roll2", [("m1", "d1"), ("m1", "d2")])  # new data, same model

    result = admin.rollback(index, "roll2", tracker=tracker)

    assert (result["live"], result["previous"], result["champion"], result["note"]) == (old, new, models["m1"], "")
    assert tracker.rejected("roll2") == frozenset()  # the model was not the problem: it may be promoted again


def test_a_target_mlflow_never_registered_moves_the_alias_only_and_says_so(
    tracker: Tracker, index: VectorIndex, tmp_path: Path
) -> None:
    models = registered(tracker, tmp_path, "roll3", ["m2"])
    tracker.set_champion("roll3", models["m2"])
    old, new = served(index, "roll3", [("m1", "d1"), ("m2", "d1")])

    result = admin.rollback(index, "roll3", tracker=tracker)

    assert result == {
        "category": "roll3",
        "live": old,
        "previous": new,
        "champion": None,
        "note": "MLflow champion not moved: model m1 is not registered",
    }
    champion = tracker.champion("roll3")
    assert champion is not None and champion.model_version == "m2"  # not moved
    assert tracker.rejected("roll3") == frozenset({"m2"})  # still never promoted again


def test_rollback_to_a_named_version(tracker: Tracker, index: VectorIndex, tmp_path: Path) -> None:
    models = registered(tracker, tmp_path, "roll4", ["m1", "m2", "m3"])
    tracker.set_champion("roll4", models["m3"])
    first, _, last = served(index, "roll4", [("m1", "d1"), ("m2", "d1"), ("m3", "d1")])

    result = admin.rollback(index, "roll4", to=first, tracker=tracker)

    assert (result["live"], result["previous"], result["champion"]) == (first, last, models["m1"])
    assert tracker.rejected("roll4") == frozenset({"m3"})


def test_index_state_describes_every_version(index: VectorIndex) -> None:
    names = served(index, "roll5", [("m1", "d1"), ("m2", "d2")])
    state = admin.index_state(index, "roll5")
    assert state["category"] == "roll5" and state["live"] == names[1]
    assert [{k: v for k, v in entry.items() if k != "created"} for entry in state["versions"]] == [
        {
            "name": names[0],
            "model_version": "m1",
            "data_hash": "d1",
            "live": False,
            "being_written": False,
            "points": 1,
        },
        {"name": names[1], "model_version": "m2", "data_hash": "d2", "live": True, "being_written": False, "points": 1},
    ]
    assert all(entry["created"] for entry in state["versions"])
    assert admin.index_state(index, "nothing") == {"category": "nothing", "live": None, "versions": []}


def test_refusals_say_what_to_do_without_echoing_a_key() -> None:
    from pydantic import SecretStr

    from visearch.errors import ForbiddenError, UnauthorizedError

    with pytest.raises(UnauthorizedError) as missing:
        admin.check_key(SecretStr("k-1"), None)
    assert str(missing.value) == (
        "admin endpoints need the API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    )
    with pytest.raises(ForbiddenError) as wrong:
        admin.check_key(SecretStr("k-1"), "k-2")
    assert str(wrong.value) == "invalid API key"
    with pytest.raises(ForbiddenError) as off:
        admin.check_key(None, "k-1")
    assert str(off.value) == "admin endpoints are disabled: set VISEARCH_API_KEY on the server to enable them"


def test_deleting_versions_of_a_category_with_nothing_live(index: VectorIndex) -> None:
    from visearch.errors import NotFoundError

    version = index.create("roll6", "m1", "d1", 4)
    index.upsert(version.name, [point_id("roll6", "a.png")], np.ones((1, 4), "float32"), [{"class": "A"}])
    index.seal(version.name)  # sealed, never made live
    with pytest.raises(NotFoundError) as unknown:
        admin.delete_version(index, "roll6", "roll6__other")
    assert str(unknown.value) == "category 'roll6' has no index version 'roll6__other'"
    assert admin.delete_version(index, "roll6", version.name) == {
        "category": "roll6",
        "deleted": version.name,
        "live": None,
    }


def test_rollback_tracked_takes_the_named_target(index: VectorIndex, tmp_path: Path) -> None:
    settings = Settings(visearch_home=tmp_path / "tracked", _env_file=None)
    first, _, last = served(index, "roll7", [("m1", "d1"), ("m2", "d1"), ("m3", "d1")])
    result = admin.rollback_tracked(index, settings, "roll7", to=first)
    assert (result["live"], result["previous"]) == (first, last)
    assert index.require_live("roll7").name == first
