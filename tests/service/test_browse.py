"""GET /categories/{category}/images over HTTP: pages, filters, errors, no API key, the OpenAPI document."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import PLAIN, TINY, TINY_CLASSES, TINY_PER_CLASS
from tests.service.server import running_service
from visearch.settings import Settings

ALL = len(TINY_CLASSES) * TINY_PER_CLASS
IMAGES = f"/categories/{TINY}/images"
BOOTS = json.dumps({"must": [{"key": "article", "match": {"value": "Ankle boot"}}]})


@pytest.fixture(scope="module")
def served(
    indexed_home: Settings, server_tmpdir: Path, server_log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The service on the indexed home WITH an admin key: browsing must not need it."""
    env = {"TMPDIR": str(server_tmpdir), "VISEARCH_API_KEY": "browse-test-key"}
    with running_service(indexed_home, server_log, env) as running:
        yield running


def walk(client: httpx.Client, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page from offset 0, following next_offset (no key sent); the items in order."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = client.get(IMAGES, params={"offset": offset, "limit": limit, **params})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["category"] == TINY and page["offset"] == offset and len(page["items"]) <= limit
        items += page["items"]
        assert len(items) <= ALL, "the pages never end"
        offset = page["next_offset"]
    return items


def test_pages_cover_the_category_exactly_once_in_a_stable_order(client: httpx.Client) -> None:
    items = walk(client, 7)
    ids = [item["id"] for item in items]
    assert len(ids) == ALL and len(set(ids)) == ALL
    assert [item["id"] for item in walk(client, 7)] == ids == [item["id"] for item in walk(client, 100)]
    first = items[0]
    assert set(first) == {"id", "class", "label", "file", "captions", "image_url"}
    assert first["class"] in TINY_CLASSES and isinstance(first["label"], int) and "article" in first["captions"]
    image = client.get(first["image_url"])
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    last = client.get(IMAGES, params={"offset": ALL - 4, "limit": 4}).json()
    assert len(last["items"]) == 4 and last["next_offset"] is None


def test_a_filter_narrows_the_pages(client: httpx.Client) -> None:
    boots = walk(client, 3, filter=BOOTS)
    assert len(boots) == TINY_PER_CLASS and {item["captions"]["article"] for item in boots} == {"Ankle boot"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"offset": -1}, "offset must be an integer from 0"),
        ({"limit": 0}, "limit must be an integer from 1 to 100"),
        ({"limit": 101}, "limit must be an integer from 1 to 100"),
        ({"filter": "{must: ["}, "filter is not JSON"),
        ({"filter": "[1]"}, "filter must be a JSON object, got list"),
        ({"filter": json.dumps({"must": [{"key": "colour", "match": {"value": "red"}}]})}, "unknown column 'colour'"),
    ],
)
def test_bad_pages_and_filters_are_400_with_the_reason(client: httpx.Client, params: dict, message: str) -> None:  # type: ignore[type-arg]
    response = client.get(IMAGES, params=params)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and response.json()["status"] == 400


def test_unknown_and_unindexed_categories_are_404(client: httpx.Client) -> None:
    unknown = client.get("/categories/nope/images", params={"limit": 0})  # the category is judged first
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    unindexed = client.get(f"/categories/{PLAIN}/images")
    assert unindexed.status_code == 404 and "has no index yet" in unindexed.json()["error"]


def test_the_writes_on_the_same_path_still_need_the_key(client: httpx.Client) -> None:
    assert client.post(IMAGES, files={"row": (None, '{"class": "Bag"}')}).status_code == 401


def test_openapi_documents_browse_without_a_key(client: httpx.Client) -> None:
    operation = client.get("/docs.json").json()["paths"]["/categories/{category}/images"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {"category", "offset", "limit", "filter"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == 100 and params["offset"]["schema"]["minimum"] == 0
    assert not operation.get("security") and {"400", "404"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema == "BrowseResponse"
