"""Index administration over HTTP: the API-key check and the operations behind ``/admin/*``.

The service's admin endpoints are thin adapters over these functions, as the CLI's ``index``
commands are over :class:`visearch.index.VectorIndex`. Without a configured key every admin
request is refused: a service exposed by mistake can search but never change the index.
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import SecretStr

from visearch.errors import ConflictError, ForbiddenError, NotFoundError, UnauthorizedError
from visearch.index import VectorIndex
from visearch.settings import Settings
from visearch.tracking import Tracker

DISABLED = "admin endpoints are disabled: set VISEARCH_API_KEY on the server to enable them"
MISSING = "admin endpoints need the API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
WRONG = "invalid API key"


def presented_key(bearer_token: str | None, api_key: str | None) -> str | None:
    """The key a request carries: the Bearer token, else the X-API-Key header (blank = none)."""
    for candidate in (bearer_token, api_key):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def check_key(configured: SecretStr | None, presented: str | None) -> None:
    """Allow the request only with the configured key; the messages never contain either key.

    Raises:
        ForbiddenError: no key is configured (admin off), or the presented key is wrong.
        UnauthorizedError: a key is configured and the request carries none.
    """
    expected = configured.get_secret_value() if configured is not None else ""
    if not expected:
        raise ForbiddenError(DISABLED)
    if presented is None:
        raise UnauthorizedError(MISSING)
    # Constant time: the answer's timing must not reveal how much of a guess was right.
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        raise ForbiddenError(WRONG)


def index_state(index: VectorIndex, category: str) -> dict[str, Any]:
    """The category's versions (oldest first) with their point counts, and which one is live."""
    live = index.live(category)
    versions = []
    for version in index.versions(category):
        points = index.points(version.name)
        versions.append(
            {
                "name": version.name,
                "created": version.created,
                "model_version": version.model_version,
                "data_hash": version.data_hash,
                "live": live is not None and version.name == live.name,
                "being_written": points is None,
                "points": points,
            }
        )
    return {"category": category, "live": live.name if live else None, "versions": versions}


def rollback(
    index: VectorIndex, category: str, *, to: str | None = None, tracker: Tracker | None = None
) -> dict[str, Any]:
    """Point the alias at ``to`` (default: the version before the live one), and the MLflow champion with it.

    The champion moves first, to the registered model of the target version, and the model rolled
    back from is marked rejected: the next pipeline run compares its candidates against what is
    served and never promotes that model again (a new model still can). A target whose model MLflow
    never registered moves the alias only, and the result says so.
    """
    previous = index.require_live(category)
    target = index.rollback_target(category, to)
    champion = None
    if tracker is not None:
        champion = tracker.find_version(category, target.model_version)
        if champion is not None:
            tracker.set_champion(category, champion)
        if previous.model_version != target.model_version:
            tracker.reject(category, previous.model_version, f"rolled back to {target.name}")
    index.swap_alias(category, target.name)
    return {
        "category": category,
        "live": target.name,
        "previous": previous.name,
        "champion": champion,
        "note": "" if champion else _why_champion_stays(tracker, target.model_version),
    }


def rollback_tracked(index: VectorIndex, settings: Settings, category: str, *, to: str | None = None) -> dict[str, Any]:
    """:func:`rollback` with the MLflow champion of ``settings``' tracking store (what ``/admin/rollback`` does).

    MLflow is reached before the index moves: when it is down, nothing changes.

    Raises:
        TrackingUnavailableError: MLflow does not answer (503).
        NotFoundError: no version to roll back to.
    """
    tracker = Tracker.from_settings(settings)
    return rollback(index, category, to=to, tracker=tracker)


def delete_version(index: VectorIndex, category: str, collection: str) -> dict[str, Any]:
    """Delete one version of the category that is neither live nor being written.

    Raises:
        NotFoundError: ``collection`` is no version of ``category``.
        ConflictError: it is the live version or a pipeline is writing it.
    """
    if collection not in {version.name for version in index.versions(category)}:
        raise NotFoundError(f"category {category!r} has no index version {collection!r}")
    live = index.live(category)
    if live is not None and live.name == collection:
        raise ConflictError(f"{collection} is the live version of {category!r}; roll back or reindex first")
    if index.is_being_written(collection):
        raise ConflictError(f"{collection} is being written by a pipeline; retry once it is done")
    index.delete(collection)
    return {"category": category, "deleted": collection, "live": live.name if live else None}


def _why_champion_stays(tracker: Tracker | None, model_version: str) -> str:
    if tracker is None:
        return "MLflow champion not moved: no tracker given (the index alone was rolled back)"
    return f"MLflow champion not moved: model {model_version} is not registered"
