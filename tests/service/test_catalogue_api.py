"""The living catalogue over REST, against the real service on a copy of an indexed home.

Add → 201 → found by the next /search; the same add again → 200, same id, nothing written;
PUT → the new class in the next result; DELETE → gone; every bad input → its 4xx naming the field
and the change log unchanged; the API key guards it all; a busy category → 503; /categories counts
the changes since training; a service killed with SIGKILL between a change record and its index
write completes it at restart, and a retried add makes no duplicate.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY, copy_home, photo
from tests.service.server import running_service
from visearch.catalogue import ChangeLog, category_lock
from visearch.categories import load_registry
from visearch.index import point_id
from visearch.settings import Settings
from visearch.storage import LocalStore

KEY = "catalogue-test-key"
AUTH = {"X-API-Key": KEY}
MAX_UPLOAD = 300_000
IMAGES = f"/categories/{TINY}/images"


def png(index: int) -> bytes:
    """A distinct real photo (scikit-image samples, a different crop per index) as PNG bytes."""
    buffer = io.BytesIO()
    photo(index, size=64).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def log_of(home: Settings) -> ChangeLog:
    return ChangeLog(LocalStore(home.objects_dir), load_registry(home.visearch_categories).get(TINY))


def post(client: httpx.Client, image: bytes | None, row: Any, *, headers: dict[str, str] = AUTH) -> httpx.Response:
    # Always multipart, as the endpoint documents it (a part without filename for the row).
    files: dict[str, Any] = {"image": ("image.png", image, "image/png")} if image is not None else {}
    if row is not None:
        files["row"] = (None, row if isinstance(row, str) else json.dumps(row))
    return client.post(IMAGES, files=files or {"nothing": (None, "")}, headers=headers)


def top(client: httpx.Client, image: bytes, k: int = 3) -> list[dict[str, Any]]:
    response = client.post("/search", files={"image": ("q.png", image, "image/png")}, data={"category": TINY, "k": k})
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


class Served:
    def __init__(self, url: str, home: Settings, log: Path) -> None:
        self.url, self.home, self.log = url, home, log


@pytest.fixture(scope="module")
def served(indexed_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service with an API key on this module's own copy of the indexed home."""
    home = copy_home(indexed_home, tmp_path_factory.mktemp("catalogue") / "home")
    log = home.home.parent / "server.log"
    env = {"VISEARCH_API_KEY": KEY, "MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}
    with running_service(home, log, env) as (url, _):
        yield Served(url, home, log)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=120) as client:
        yield client


def test_an_added_image_is_found_by_the_next_search_and_the_same_add_again_changes_nothing(
    served: Served, client: httpx.Client
) -> None:
    image, log = png(1), log_of(served.home)
    before = log.last_seq()
    added = post(client, image, {"class": "Rocket", "article": "a rocket"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["created"] is True and body["new_class"] is True  # a class the model was not trained on
    assert body["seq"] == before + 1 and body["model_version"] and body["data_version"]
    assert body["id"] == point_id(TINY, body["file"])
    assert top(client, image)[0]["id"] == body["id"]  # the very next query
    assert top(client, image)[0]["class"] == "Rocket" and top(client, image)[0]["similarity"] > 99
    again = post(client, image, {"class": "Rocket", "article": "a rocket"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == body["id"] and again.json()["created"] is False
    assert log.last_seq() == before + 1  # nothing written the second time
    assert f"catalogue: add {body['id']} ({body['file']}) in {TINY}, seq {before + 1}" in served.log.read_text()


def test_an_add_names_the_near_duplicates_already_in_the_category(served: Served, client: httpx.Client) -> None:
    stored = next((served.home.objects_dir / "datasets" / TINY / "images" / "Bag").glob("*.png"))
    original = point_id(TINY, f"Bag/{stored.name}")
    added = post(client, stored.read_bytes(), {"class": "Bag", "file": "copies/bag.png"})
    assert added.status_code == 201, added.text
    near = added.json()["near_duplicates"]
    assert near and near[0]["id"] == original and near[0]["class"] == "Bag" and near[0]["similarity"] > 99
    assert added.json()["new_class"] is False and len(near) <= 5


def test_put_replaces_the_row_and_the_image_at_once(served: Served, client: httpx.Client) -> None:
    first, second = png(2), png(9)
    pid = post(client, first, {"class": "Cat", "file": "put/cat.png"}).json()["id"]
    renamed = client.put(f"{IMAGES}/{pid}", data={"row": json.dumps({"class": "Sneaker"})}, headers=AUTH)
    assert renamed.status_code == 200, renamed.text
    assert top(client, first)[0]["id"] == pid and top(client, first)[0]["class"] == "Sneaker"
    files = {"image": ("new.png", second, "image/png")}
    swapped = client.put(f"{IMAGES}/{pid}", files=files, headers=AUTH)
    assert swapped.status_code == 200 and swapped.json()["id"] == pid, swapped.text
    assert top(client, second)[0]["id"] == pid and top(client, second)[0]["class"] == "Sneaker"
    assert all(r["id"] != pid or r["similarity"] < 99 for r in top(client, first))


def test_delete_removes_the_image_from_every_query(served: Served, client: httpx.Client) -> None:
    image = png(3)
    pid = post(client, image, {"class": "Rocket", "file": "gone/rocket.png"}).json()["id"]
    assert top(client, image)[0]["id"] == pid
    removed = client.delete(f"{IMAGES}/{pid}", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["op"] == "remove", removed.text
    assert pid not in [r["id"] for r in top(client, image, k=50)]
    assert client.post("/search_by_id", json={"category": TINY, "point_id": pid}).status_code == 404
    again = client.delete(f"{IMAGES}/{pid}", headers=AUTH)
    assert again.status_code == 404 and "id" in again.json()["error"]


def bag_row(**extra: Any) -> dict[str, Any]:
    return {"class": "Bag", **extra}


# (what is sent, expected status, a word the message must hold)
BAD: dict[str, tuple[dict[str, Any], int, str]] = {
    "not an image": ({"image": b"certainly not an image", "row": bag_row()}, 400, "image"),
    "too big": ({"image": noise_png(400), "row": bag_row()}, 413, "image"),
    "no image": ({"image": None, "row": bag_row()}, 400, "image"),
    "no row": ({"image": png(4), "row": None}, 422, "row"),
    "row not JSON": ({"image": png(4), "row": "{class: Bag"}, 422, "row"),
    "row without class": ({"image": png(4), "row": {"label": 8}}, 422, "class"),
    "unknown column": ({"image": png(4), "row": bag_row(colour="red")}, 422, "colour"),
    "label of another class": ({"image": png(4), "row": bag_row(label=1)}, 422, "label"),
    "a file the category holds": ({"image": png(4), "row": bag_row(file="Bag/none.png")}, 0, "file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    served: Served, client: httpx.Client, case: str
) -> None:
    sent, status, word = BAD[case]
    log = log_of(served.home)
    if case == "a file the category holds":  # one of the base rows, sent with other bytes
        name = next((served.home.objects_dir / "datasets" / TINY / "images" / "Bag").glob("*.png")).name
        sent = {**sent, "row": bag_row(file=f"Bag/{name}")}
        status = 409
    before = log.last_seq()
    response = post(client, sent["image"], sent["row"])
    assert response.status_code == status, response.text
    assert word in response.json()["error"]
    assert log.last_seq() == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/categories/no-such-category/images", 404),
        ("POST", "/categories/fashion-mnist/images", 404),  # in the registry, no live index
        ("PUT", f"{IMAGES}/00000000-0000-0000-0000-000000000000", 404),
        ("DELETE", f"{IMAGES}/00000000-0000-0000-0000-000000000000", 404),
    ],
)
def test_unknown_categories_ids_and_categories_without_index_are_404(
    served: Served, client: httpx.Client, method: str, path: str, status: int
) -> None:
    before = log_of(served.home).last_seq()
    form = {"files": {"image": ("a.png", png(5), "image/png")}, "data": {"row": json.dumps(bag_row())}}
    response = client.request(method, path, headers=AUTH, **({} if method == "DELETE" else form))
    assert response.status_code == status, response.text
    assert log_of(served.home).last_seq() == before


def test_the_api_key_guards_every_write(served: Served, client: httpx.Client) -> None:
    before = log_of(served.home).last_seq()
    for headers, status in (({}, 401), ({"X-API-Key": "wrong"}, 403), ({"Authorization": "Bearer wrong"}, 403)):
        assert post(client, png(6), bag_row(), headers=headers).status_code == status
        assert client.put(f"{IMAGES}/x", data={"row": "{}"}, headers=headers).status_code == status
        assert client.delete(f"{IMAGES}/x", headers=headers).status_code == status
    assert log_of(served.home).last_seq() == before
    assert "admin request POST /categories/tiny/images from 127.0.0.1 refused" in served.log.read_text()


def test_a_busy_category_is_a_503_and_writes_nothing(served: Served, client: httpx.Client) -> None:
    before = log_of(served.home).last_seq()
    with category_lock(served.home.home / "locks", TINY):  # another writer (a CLI sync) holds the category
        response = post(client, png(7), bag_row())
    assert response.status_code == 503 and "retry" in response.json()["error"], response.text
    assert log_of(served.home).last_seq() == before


def changes(client: httpx.Client, expected: dict[str, int] | None = None) -> dict[str, int]:
    """The counts /categories gives `tiny`; with ``expected``, polled until they match (a recount runs
    beside the request: /categories answers the last counts rather than wait on a slow store)."""
    deadline = time.monotonic() + 30
    while True:
        categories = client.get("/categories").json()
        counts: dict[str, int] = next(c["changes"] for c in categories if c["name"] == TINY)
        if expected is None or counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_categories_count_the_changes_since_training(served: Served, client: httpx.Client) -> None:
    start = changes(client)
    pid = post(client, png(8), {"class": "Rocket", "file": "count/a.png"}).json()["id"]
    expected = {**start, "add": start["add"] + 1}
    assert changes(client, expected) == expected
    stored = sorted((served.home.objects_dir / "datasets" / TINY / "images" / "Dress").glob("*.png"))[-1]
    base = point_id(TINY, f"Dress/{stored.name}")
    assert client.put(f"{IMAGES}/{base}", data={"row": '{"article": "a dress"}'}, headers=AUTH).status_code == 200
    expected = {**start, "add": start["add"] + 1, "replace": start["replace"] + 1}
    assert changes(client, expected) == expected
    assert client.delete(f"{IMAGES}/{pid}", headers=AUTH).status_code == 200  # added then removed: no change
    assert client.delete(f"{IMAGES}/{base}", headers=AUTH).status_code == 200
    expected = {**start, "remove": start["remove"] + 1}
    assert changes(client, expected) == expected


def test_openapi_documents_the_three_writes_behind_the_key(served: Served, client: httpx.Client) -> None:
    spec = client.get("/docs.json").json()
    for path, method in ((IMAGES.replace(TINY, "{category}"), "post"), (f"{IMAGES}/{{point_id}}", "put")):
        path = path.replace(TINY, "{category}")
        body = spec["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]
        assert {"image", "row"} <= set(body["schema"]["properties"])
    for path, method in (
        ("/categories/{category}/images", "post"),
        ("/categories/{category}/images/{point_id}", "put"),
        ("/categories/{category}/images/{point_id}", "delete"),
    ):
        operation = spec["paths"][path][method]
        assert {"401", "403", "404"} <= set(operation["responses"]), (path, method)
        assert {name for requirement in operation["security"] for name in requirement} == {"HTTPBearer", "APIKeyHeader"}


# --- a crash in the middle of an add ----------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """A process and all its descendants (BentoML serves from child processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(FileNotFoundError):
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
    return found


def seqs(folder: Path) -> list[str]:
    """The change records written so far (not a temporary file of an atomic write)."""
    names = os.listdir(folder) if folder.is_dir() else []
    return [name for name in names if name.endswith(".json") and name[:-5].isdigit()]


def test_a_service_killed_between_record_and_index_write_completes_the_add_at_restart(
    indexed_home: Settings, tmp_path: Path
) -> None:
    home = copy_home(indexed_home, tmp_path / "home")
    log = log_of(home)
    records = home.objects_dir / "datasets" / TINY / "changes" / "log"
    images = {f"crash/{i}.png": png(10 + i) for i in range(4)}
    rows = {file: {"class": "Crash", "file": file} for file in images}
    first = running_service(home, tmp_path / "first.log", {"VISEARCH_API_KEY": KEY})
    with first as (url, process), httpx.Client(base_url=url, timeout=120) as client:

        def add_all() -> None:
            for file, data in images.items():
                try:
                    post(client, data, rows[file])
                except httpx.HTTPError:
                    return  # the server died under us

        writer = threading.Thread(target=add_all, daemon=True)
        writer.start()
        # SIGKILL the moment the second change record lands: its index write has not happened yet.
        deadline = time.monotonic() + 120
        while len(seqs(records)) < 2 and time.monotonic() < deadline:
            time.sleep(0.0005)
        for pid in tree(process.pid):
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        writer.join(timeout=60)
    live = next(iter(json.loads(p.read_text())["seq"] for p in (records.parent / "applied").glob("*.json")))
    assert log.last_seq() == 2 and live < 2  # the crash came between the record and its index write
    second = running_service(home, tmp_path / "second.log", {"VISEARCH_API_KEY": KEY})
    with second as (url, _), httpx.Client(base_url=url, timeout=120) as client:
        logged = {record.file for record in log.records()}
        for file, data in images.items():  # each image fully present (in the log and searchable) or absent
            found = top(client, data, k=1)[0]["id"] == point_id(TINY, file)
            assert found == (file in logged), file
        for file, data in images.items():  # the same adds retried: same ids, no duplicate
            response = post(client, data, rows[file])
            assert response.status_code == (200 if file in logged else 201), response.text
            assert response.json()["id"] == point_id(TINY, file)
            assert top(client, data, k=1)[0]["id"] == point_id(TINY, file)
        adds = [record.file for record in log.records() if record.op == "add"]
        assert sorted(adds) == sorted(images)  # one record per image, none twice
    # The records after the marker on disk: the one in flight, and any group-committed but not flushed yet.
    assert f"catalogue catch-up tiny: {2 - live} written, 0 deleted" in (tmp_path / "second.log").read_text()


def test_the_ui_line_says_what_changed_since_training() -> None:
    from visearch.catalogue_api import changes_line

    assert (
        changes_line({"add": 12, "replace": 0, "remove": 3}) == "12 images added, 3 removed since the model was trained"
    )
    assert changes_line({"add": 0, "replace": 1, "remove": 0}) == "1 image replaced since the model was trained"
    assert changes_line({"add": 0, "replace": 0, "remove": 0}) == ""
