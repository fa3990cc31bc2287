"""POST /search_raw over HTTP: the image as the request body, the options in the query string.

The same query as the multipart /search, without multipart parsing or a spooled upload (the
cheaper way to send one image; benchmarks/latency.py measures both).
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.helpers import TINY, TINY_CLASSES
from tests.service.uploads import png_claiming
from visearch.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example(client: httpx.Client) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    found = client.get(f"/categories/{TINY}/examples", params={"limit": 1})
    assert found.status_code == 200, found.text
    first = found.json()[0]
    return first, client.get(first["image_url"]).content


def raw(client: httpx.Client, data: bytes, media_type: str = "image/png", **params: object) -> httpx.Response:
    query = {"category": TINY, **params}
    return client.post("/search_raw", content=data, headers={"Content-Type": media_type}, params=query)


@pytest.mark.parametrize(
    "options", [{"k": 5}, {"k": 20, "class_filter": TINY_CLASSES[1]}, {"k": 20, "min_similarity": 90}]
)
def test_a_raw_body_answers_exactly_what_the_multipart_upload_does(
    client: httpx.Client,
    example: tuple[dict, bytes],  # type: ignore[type-arg]
    options: dict[str, object],
) -> None:
    point, data = example
    response = raw(client, data, **options)
    assert response.status_code == 200, response.text
    multipart = client.post(
        "/search", data={"category": TINY, **options}, files={"image": ("q.png", data, "image/png")}
    )
    assert multipart.status_code == 200, multipart.text
    assert response.json() == multipart.json()
    results = response.json()["results"]
    assert results and len(results) <= int(str(options["k"]))
    if "class_filter" not in options:
        assert results[0]["id"] == point["id"] and results[0]["similarity"] > 99


def test_a_jpeg_body_is_decoded_by_its_bytes(client: httpx.Client, example: tuple[dict, bytes]) -> None:  # type: ignore[type-arg]
    point, data = example
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=95)
    response = raw(client, buffer.getvalue(), "image/jpeg", k=1)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == point["id"]


BAD_RAW = [
    ("empty body", 400, "empty image"),
    ("non-image", 400, "not a supported image"),
    ("truncated", 400, "truncated"),
    ("bomb header", 413, "pixels"),
    ("oversized", 413, "upload too large"),
    ("unknown category", 404, "unknown category"),
    ("category without index", 404, "no index yet"),
    ("no category", 422, "category: Field required"),
    ("k = 0", 400, "k must be"),
    ("k huge", 400, "k must be"),
    ("k not an integer", 422, "k: Input should be a valid integer"),
    ("min similarity over 100", 422, "min_similarity"),
    ("class filter too long", 422, "class_filter: String should have at most 200 characters"),
]


@pytest.mark.parametrize(("case", "status", "message"), BAD_RAW)
def test_bad_raw_bodies_and_options_get_4xx_json(
    client: httpx.Client,
    example: tuple[dict, bytes],  # type: ignore[type-arg]
    case: str,
    status: int,
    message: str,
) -> None:
    good = example[1]
    bodies = {
        "empty body": b"",
        "non-image": b"%PDF-1.4 definitely not an image",
        "truncated": good[: len(good) // 2],
        "bomb header": png_claiming(20000, 20000),
        "oversized": good + b"\0" * (11 * 1024 * 1024),
    }
    params: dict[str, object] = {
        "unknown category": {"category": "no-such-category"},
        "category without index": {"category": "shoes"},
        "k = 0": {"k": 0},
        "k huge": {"k": 10**9},
        "k not an integer": {"k": "ten"},
        "min similarity over 100": {"min_similarity": 150},
        "class filter too long": {"class_filter": "x" * 1000},
    }.get(case, {})
    if case == "no category":
        response = client.post("/search_raw", content=good, headers={"Content-Type": "image/png"})
    else:
        response = raw(client, bodies.get(case, good), **params)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and body["status"] == status, body


def test_the_document_states_the_raw_body_and_the_query_options(client: httpx.Client) -> None:
    operation = client.get("/docs.json").json()["paths"]["/search_raw"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert {"image/png", "image/jpeg", "image/webp"} <= set(body["content"])
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {name: p["in"] for name, p in parameters.items()} == {
        "category": "query",
        "k": "query",
        "min_similarity": "query",
        "class_filter": "query",
    }
    assert parameters["category"]["required"] is True
    k = parameters["k"]["schema"]
    assert (k["minimum"], k["maximum"]) == (1, Settings(_env_file=None).max_k)
    assert set(operation["responses"]) == {"200", "400", "404", "413", "422", "503"}
