"""Admin operations in the library: the API key check, and rollback / delete / state on an index."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from tests.helpers import TINY, closed_url, make_home
from visearch import admin
from visearch.errors import ConflictError, ForbiddenError, NotFoundError, TrackingUnavailableError, UnauthorizedError
from visearch.index import VectorIndex, point_id
from visearch.index.edge import EdgeBackend

KEY = secrets.token_hex(24)
WRONG = secrets.token_hex(24)


def test_check_key_refuses_unless_the_configured_key_is_presented() -> None:
    with pytest.raises(ForbiddenError, match="disabled"):
        admin.check_key(None, KEY)
    with pytest.raises(ForbiddenError, match="disabled"):
        admin.check_key(SecretStr(""), KEY)
    with pytest.raises(UnauthorizedError) as missing:
        admin.check_key(SecretStr(KEY), None)
    with pytest.raises(ForbiddenError) as wrong:
        admin.check_key(SecretStr(KEY), WRONG)
    admin.check_key(SecretStr(KEY), KEY)
    for message in (str(missing.value), str(wrong.value)):
        assert KEY not in message and WRONG not in message
    assert admin.presented_key(None, f" {KEY} ") == KEY
    assert admin.presented_key(KEY, WRONG) == KEY  # the Bearer token wins
    assert admin.presented_key(" ", "") is None


def test_admin_operations_on_an_index(tmp_path: Path) -> None:
    index = VectorIndex(EdgeBackend(tmp_path / "index"))
    try:
        made = []
        for model in ("m1", "m2"):
            version = index.create(TINY, model, "d1", 4)
            index.upsert(version.name, [point_id(TINY, "a.png")], np.ones((1, 4), "float32"), [{"class": "A"}])
            index.seal(version.name)
            index.swap_alias(TINY, version.name)
            made.append(version.name)
        writing = index.create(TINY, "m3", "d1", 4).name  # unsealed: this process holds its writer lock
        state = admin.index_state(index, TINY)
        assert state["live"] == made[1]
        assert [(v["name"], v["live"], v["being_written"], v["points"]) for v in state["versions"]] == [
            (made[0], False, False, 1),
            (made[1], True, False, 1),
            (writing, False, True, None),
        ]
        with pytest.raises(ConflictError, match="live version"):
            admin.delete_version(index, TINY, made[1])
        with pytest.raises(ConflictError, match="being written"):
            admin.delete_version(index, TINY, writing)
        with pytest.raises(NotFoundError):
            admin.delete_version(index, TINY, "other__1-2-3")
        rolled = admin.rollback(index, TINY)  # without a tracker: the alias moves, MLflow is not asked
        assert rolled == {
            "category": TINY,
            "live": made[0],
            "previous": made[1],
            "champion": None,
            "note": "MLflow champion not moved: no tracker given (the index alone was rolled back)",
        }
        assert admin.delete_version(index, TINY, made[1]) == {"category": TINY, "deleted": made[1], "live": made[0]}
        with pytest.raises(NotFoundError, match="no older"):
            admin.rollback(index, TINY)
    finally:
        index.close()


def test_rollback_tracked_moves_the_alias_with_the_tracking_store_of_the_settings(tmp_path: Path) -> None:
    settings = make_home(tmp_path / "home")
    index = VectorIndex(EdgeBackend(tmp_path / "index"))
    try:
        made = []
        for model in ("m1", "m2"):
            version = index.create(TINY, model, "d1", 4)
            index.upsert(version.name, [point_id(TINY, "a.png")], np.ones((1, 4), "float32"), [{"class": "A"}])
            index.seal(version.name)
            index.swap_alias(TINY, version.name)
            made.append(version.name)
        down = settings.model_copy(update={"mlflow_tracking_uri": closed_url()})
        with pytest.raises(TrackingUnavailableError):
            admin.rollback_tracked(index, down, TINY)
        assert index.require_live(TINY).name == made[1]  # MLflow down: nothing moved
        rolled = admin.rollback_tracked(index, settings, TINY)  # the home's sqlite MLflow: m1 never registered
        assert rolled == {
            "category": TINY,
            "live": made[0],
            "previous": made[1],
            "champion": None,
            "note": "MLflow champion not moved: model m1 is not registered",
        }
        assert index.require_live(TINY).name == made[0]
    finally:
        index.close()
