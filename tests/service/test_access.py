"""Access: admin endpoints behind VISEARCH_API_KEY, secrets only from env/Secrets, none in images.

Over HTTP against the real service: without a key every admin request is refused; with one, no
key is 401, a wrong one 403, the right one works and a rollback really changes what /search
answers; the key never reaches the server log nor any response.
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
import yaml
from pydantic import SecretStr

from visearch import admin
from visearch.categories import load_registry
from visearch.errors import ConflictError, ForbiddenError, NotFoundError, UnauthorizedError
from visearch.index import open_index
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.steps import run_upsert
from visearch.storage import LocalStore

from .conftest import TINY, make_home
from .servers import start_server, stop_server
from .test_upsert import prepared

ROOT = Path(__file__).resolve().parents[1]
KEY = secrets.token_hex(24)
WRONG = secrets.token_hex(24)
ADMIN_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/admin/index", {"params": {"category": TINY}}),
    ("POST", "/admin/rollback", {"json": {"category": TINY}}),
    ("POST", "/admin/delete_version", {"json": {"category": TINY, "collection": f"{TINY}__x-y-z"}}),
]


# --- the key check (library) --------------------------------------------------------------------
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
    import numpy as np

    from visearch.index import VectorIndex, point_id
    from visearch.index.edge import EdgeBackend

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
        assert admin.rollback(index, TINY) == {"category": TINY, "live": made[0], "previous": made[1]}
        assert admin.delete_version(index, TINY, made[1]) == {"category": TINY, "deleted": made[1], "live": made[0]}
        with pytest.raises(NotFoundError, match="no older"):
            admin.rollback(index, TINY)
    finally:
        index.close()


@pytest.mark.parametrize("name", ["", ".", "..", "../../etc/passwd", "a/b"])
def test_category_names_never_address_files_outside_the_index(tmp_path: Path, name: str) -> None:
    from visearch.index.edge import EdgeBackend

    backend = EdgeBackend(tmp_path / "index")
    with pytest.raises(NotFoundError):
        backend.alias(name)
    with pytest.raises(NotFoundError):
        backend.set_alias(name, "x")


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
def versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    """Two versions of `tiny` made by two different models (32 and 48 px), the newer one live, and
    the service on that home with VISEARCH_API_KEY set. ``expected`` holds what a search gives on
    each version, computed in-process while it was live."""
    home = make_home(tmp_path_factory.mktemp("access") / "home")
    registry, store = load_registry(home.visearch_categories), LocalStore(home.objects_dir)
    query = next((home.objects_dir / "datasets" / TINY / "images").rglob("*.png")).read_bytes()
    expected, names = {}, []
    for size in (32, 48):
        manifest, model, embeddings = prepared(home, registry, store, size)
        result = run_upsert(home, store, registry.get(TINY), manifest, model, embeddings)
        engine = SearchEngine(home, registry, store, open_index(home))
        try:
            expected[result.collection] = ranked(engine.search_bytes(TINY, query, k=10))
        finally:
            engine.close()
        names.append(result.collection)
        count = result.count
    log = tmp_path_factory.mktemp("access-service") / "server.log"
    process, url = start_server(home, log, {"VISEARCH_API_KEY": KEY})
    try:
        from visearch.cli.serve import wait_ready

        if not wait_ready(url, process, timeout=180):
            pytest.fail(f"service did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
        yield Versions(url, log, names[0], names[1], query, count, expected)
    finally:
        stop_server(process)


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
        assert rolled.json() == {"category": TINY, "live": older, "previous": newer}
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


def test_the_key_never_reaches_the_log_nor_a_response(versions: Versions) -> None:
    with httpx.Client(base_url=versions.url, timeout=60) as client:
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


# --- credentials: from env / Secrets only, never in an image -----------------------------------
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.I)


def secret_settings() -> list[str]:
    return [
        name.upper() for name, field in Settings.model_fields.items() if SecretStr in typing.get_args(field.annotation)
    ]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.train", "Dockerfile.serve"])
def test_images_bake_no_secrets(dockerfile: str) -> None:
    """No ENV/ARG names a credential (ARG values stay in the image history) and no .env is copied."""
    text = re.sub(r"\\\n", " ", (ROOT / dockerfile).read_text())  # join continuation lines
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=|\s|$)", rest)
            assert not [n for n in names if SECRET_NAME.search(n)], line
        if instruction.upper() in ("COPY", "ADD"):
            assert ".env" not in rest, line


def test_secret_settings_come_only_from_env_and_secrets() -> None:
    names = secret_settings()
    assert {"VISEARCH_API_KEY", "QDRANT_API_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"} <= set(names)
    example = dict(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.M))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service_env = compose["services"]["visearch"]["environment"]
    config = yaml.safe_load((ROOT / "k8s" / "base" / "config.yaml").read_text())
    docs = yaml.safe_load_all((ROOT / "k8s" / "base" / "secrets.yaml").read_text())
    placeholders = next(d for d in docs if d["metadata"]["name"] == "visearch-secrets")["stringData"]
    for name in names:
        assert example[name] == "", f"{name} must be blank in .env.example"
        if name in service_env:
            assert service_env[name].startswith("${" + name + ":"), f"{name} must come from .env, never a literal"
        assert name not in config.get("data", {}), f"{name} belongs in a Secret, not the ConfigMap"
    assert placeholders["VISEARCH_API_KEY"].startswith("CHANGE-ME")  # dev only; prod creates the real one
    assert service_env["VISEARCH_API_KEY"] == "${VISEARCH_API_KEY:-}"  # optional: admin stays off without it
