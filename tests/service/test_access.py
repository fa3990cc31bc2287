"""Access: the admin endpoints behind VISEARCH_API_KEY, over HTTP against the real service.

Without a key every admin request is refused; with one, no key is 401, a wrong one 403, the right
one works and a rollback really changes what /search answers; the key never reaches the server log
nor any response. Every test with a key gets its own service on its own copy of a home with two
index versions, so each starts from the same state whatever ran before. The key check itself:
tests/unit/test_admin.py; credentials in images and deploy files: tests/deploy/test_secrets.py.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import TINY, copy_home, make_home, prepared
from tests.service.server import running_service
from visearch import admin
from visearch.categories import load_registry
from visearch.index import open_index
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.stages.upsert import run_upsert
from visearch.storage import LocalStore

KEY = secrets.token_hex(24)
WRONG = secrets.token_hex(24)
ADMIN_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/admin/index", {"params": {"category": TINY}}),
    ("POST", "/admin/rollback", {"json": {"category": TINY}}),
    ("POST", "/admin/delete_version", {"json": {"category": TINY, "collection": f"{TINY}__x-y-z"}}),
]


# --- no key configured: admin refused ----------------------------------------------------------
def test_without_a_configured_key_admin_endpoints_are_refused(server: str, indexed_home: Settings) -> None:
    index = open_index(indexed_home)
    before = [v.name for v in index.versions(TINY)], index.live(TINY)
    index.close()
    with httpx.Client(base_url=server, timeout=30) as client:
        for method, path, options in ADMIN_CALLS:
            for headers in ({}, {"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
                response = client.request(method, path, headers=headers, **options)
                assert response.status_code == 403, (path, response.text)
                assert response.json() == {"error": admin.DISABLED, "status": 403}
        assert client.get("/categories").status_code == 200  # search stays open
    index = open_index(indexed_home)
    assert ([v.name for v in index.versions(TINY)], index.live(TINY)) == before
    index.close()


# --- a key configured: a home with two index versions ----------------------------------------
class TwoVersions(typing.NamedTuple):
    home: Settings
    older: str
    newer: str
    query: bytes
    count: int  # points in each version
    expected: dict[str, list[tuple[str, float]]]  # version name -> (id, score) of the query's results


class Versions(typing.NamedTuple):
    url: str
    log: Path
    older: str
    newer: str
    query: bytes
    count: int  # points in each version
    expected: dict[str, list[tuple[str, float]]]  # version name -> (id, score) of the query's results


def ranked(results: list[Any]) -> list[tuple[str, float]]:
    return [(r["id"], round(r["score"], 4)) if isinstance(r, dict) else (r.id, round(r.score, 4)) for r in results]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> TwoVersions:
    """Two versions of `tiny` made by two different models (32 and 48 px), the newer one live.
    ``expected`` holds what a search gives on each version, computed in-process while it was live.
    Built once and never served itself: each test serves a copy (:func:`versions`)."""
    home = make_home(tmp_path_factory.mktemp("access") / "home")
    registry, store = load_registry(home.visearch_categories), LocalStore(home.objects_dir)
    query = next((home.objects_dir / "datasets" / TINY / "images").rglob("*.png")).read_bytes()
    expected, names = {}, []
    for size in (32, 48):
        manifest, model, embeddings = prepared(home, registry, store, size)
        result = run_upsert(home, store, registry.get(TINY), manifest, model, embeddings)
        engine = SearchEngine(home, registry, store, open_index(home))
        try:
            expected[result.collection] = ranked(engine.search(TINY, query, k=10).results)
        finally:
            engine.close()
        names.append(result.collection)
        count = result.count
    return TwoVersions(home, names[0], names[1], query, count, expected)


@pytest.fixture
def versions(two_versions: TwoVersions, tmp_path: Path) -> Iterator[Versions]:
    """The service with VISEARCH_API_KEY set, on this test's own copy of the two-version home: the
    newer version live and both stored, whatever other tests rolled back or deleted."""
    home = copy_home(two_versions.home, tmp_path / "home")
    log = tmp_path / "server.log"
    with running_service(home, log, {"VISEARCH_API_KEY": KEY}) as (url, _):
        older, newer = two_versions.older, two_versions.newer
        yield Versions(url, log, older, newer, two_versions.query, two_versions.count, two_versions.expected)


def search(client: httpx.Client, query: bytes) -> list[tuple[str, float]]:
    response = client.post(
        "/search", files={"image": ("q.png", query, "image/png")}, data={"category": TINY, "k": "10"}
    )
    assert response.status_code == 200, response.text
    return ranked(response.json()["results"])


def test_admin_needs_the_right_key(versions: Versions) -> None:
    with httpx.Client(base_url=versions.url, timeout=60) as client:
        for method, path, options in ADMIN_CALLS:
            missing = client.request(method, path, **options)
            assert missing.status_code == 401 and missing.json() == {"error": admin.MISSING, "status": 401}
            assert missing.headers["www-authenticate"] == "Bearer"
            for headers in ({"Authorization": f"Bearer {WRONG}"}, {"X-API-Key": WRONG}):
                wrong = client.request(method, path, headers=headers, **options)
                assert wrong.status_code == 403 and wrong.json() == {"error": admin.WRONG, "status": 403}
        # The key is checked before the body: without it, a malformed request learns nothing either.
        assert client.post("/admin/rollback", json={"nope": 1}).status_code == 401
        assert client.post("/admin/rollback", content=b"{not json").status_code == 401
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}, {"authorization": f"bearer {KEY}"}):
            state = client.get("/admin/index", params={"category": TINY}, headers=headers)
            assert state.status_code == 200, state.text
        body = state.json()
        assert body["live"] == versions.newer
        assert [(v["name"], v["live"], v["points"]) for v in body["versions"]] == [
            (versions.older, False, versions.count),
            (versions.newer, True, versions.count),
        ]


def test_rollback_changes_what_search_answers_and_the_live_version_cannot_be_deleted(versions: Versions) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    older, newer = versions.older, versions.newer
    assert versions.expected[older] != versions.expected[newer]  # the two models rank differently
    with httpx.Client(base_url=versions.url, timeout=60, headers=auth) as client:
        assert search(client, versions.query) == versions.expected[newer]

        live = client.post("/admin/delete_version", json={"category": TINY, "collection": newer})
        assert live.status_code == 409 and "live version" in live.json()["error"]
        unknown = client.post("/admin/delete_version", json={"category": TINY, "collection": "tiny__nope"})
        assert unknown.status_code == 404
        assert client.get("/admin/index", params={"category": "no-such"}).status_code == 404
        assert client.post("/admin/rollback", json={"category": "no-such"}).status_code == 404
        assert client.post("/admin/rollback", json={}).status_code == 422

        rolled = client.post("/admin/rollback", json={"category": TINY})
        assert rolled.status_code == 200, rolled.text
        body = rolled.json()
        assert {k: body[k] for k in ("category", "live", "previous")} == {
            "category": TINY,
            "live": older,
            "previous": newer,
        }
        # This home's versions were indexed without MLflow: the alias moves, and the answer says the champion did not.
        assert body["champion"] is None and "not registered" in body["note"]
        # The next search uses the older version and the model that made it.
        assert search(client, versions.query) == versions.expected[older]
        again = client.post("/admin/rollback", json={"category": TINY})
        assert again.status_code == 404 and "no older index version" in again.json()["error"]

        deleted = client.post("/admin/delete_version", json={"category": TINY, "collection": newer})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"category": TINY, "deleted": newer, "live": older}
        state = client.get("/admin/index", params={"category": TINY}).json()
        assert [v["name"] for v in state["versions"]] == [older] and state["live"] == older
        assert search(client, versions.query) == versions.expected[older]
        assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_fuzzing_the_admin_endpoints_with_the_key_finds_no_server_error(versions: Versions, tmp_path: Path) -> None:
    """What the unauthenticated fuzzing of the whole API cannot reach: the admin bodies behind the key."""
    # The live version is the older one (rolled back here): a fuzzed rollback or delete that reached
    # the real category would change what is live or stored.
    with httpx.Client(base_url=versions.url, timeout=60, headers={"X-API-Key": KEY}) as client:
        rolled = client.post("/admin/rollback", json={"category": TINY})
        assert rolled.status_code == 200 and rolled.json()["live"] == versions.older, rolled.text
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{versions.url}/docs.json",
        "--url",
        versions.url,
        "--include-path-regex",
        "^/admin/",
        "-H",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        "40",
        "--seed",
        "7",
        "--request-timeout",
        "60",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": ""}
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "3 selected" in result.stdout and not re.search(r"\d+ failed", result.stdout)
    with httpx.Client(base_url=versions.url, timeout=60) as client:
        state = client.get("/admin/index", params={"category": TINY}, headers={"X-API-Key": KEY}).json()
        assert state["live"] == versions.older  # random names never hit the real category's versions
        assert [v["name"] for v in state["versions"]] == [versions.older, versions.newer]


def test_the_key_never_reaches_the_log_nor_a_response(versions: Versions) -> None:
    with httpx.Client(base_url=versions.url, timeout=60) as client:
        # What the audit trail below must show: a rollback and a deletion, made with the key.
        auth = {"X-API-Key": KEY}
        rolled = client.post("/admin/rollback", json={"category": TINY}, headers=auth)
        assert rolled.status_code == 200, rolled.text
        deleted = client.post(
            "/admin/delete_version", json={"category": TINY, "collection": versions.newer}, headers=auth
        )
        assert deleted.status_code == 200, deleted.text
        answers = [
            client.get("/admin/index", params={"category": TINY}, headers=h).text
            for h in ({"X-API-Key": WRONG}, {"X-API-Key": KEY}, {})
        ]
        answers.append(client.get("/docs.json").text)
    assert not any(KEY in text or WRONG in text for text in answers)
    log = versions.log.read_text(errors="replace")
    # refusals and changes are logged (an audit trail), keys are not
    assert "admin request GET /admin/index from 127.0.0.1 refused: invalid API key" in log
    assert f"admin: rolled {TINY} back from {versions.newer} to {versions.older}" in log
    assert f"admin: deleted index version {versions.newer}" in log
    assert KEY not in log and WRONG not in log


def test_openapi_documents_the_admin_endpoints_and_their_auth(server: str) -> None:
    spec = httpx.get(f"{server}/docs.json", timeout=30).json()
    for path, method in (("/admin/index", "get"), ("/admin/rollback", "post"), ("/admin/delete_version", "post")):
        operation = spec["paths"][path][method]
        assert {"401", "403", "404"} <= set(operation["responses"]), path
        assert {name for requirement in operation["security"] for name in requirement} == {"HTTPBearer", "APIKeyHeader"}
