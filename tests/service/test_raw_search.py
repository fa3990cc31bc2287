"""POST /search_raw over HTTP: the image as the request body, the options in the query string.

The same query as the multipart /search, without multipart parsing or a spooled upload (the
cheaper way to send one image; benchmarks/latency.py measures both).
"""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from serving.schemas import SearchInput
from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS
from tests.service.uploads import png_claiming
from visearch.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example(client: httpx.Client) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    found = client.get(f"/categories/{TINY}/examples", params={"limit": 1})
    assert found.status_code == 200, found.text
    first = found.json()[0]
    return first, client.get(first["image_url"]).content


BOOTS = {"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}


def as_text(value: object) -> str:
    """A value as a form or a query string carries it: objects and booleans as JSON."""
    return json.dumps(value) if isinstance(value, dict | list | bool) else str(value)


def raw(client: httpx.Client, data: bytes, media_type: str = "image/png", **params: object) -> httpx.Response:
    query = {"category": TINY, **{name: as_text(value) for name, value in params.items()}}
    return client.post("/search_raw", content=data, headers={"Content-Type": media_type}, params=query)


def multipart(client: httpx.Client, data: bytes, **fields: object) -> httpx.Response:
    form = {"category": TINY, **{name: as_text(value) for name, value in fields.items()}}
    return client.post("/search", data=form, files={"image": ("q.png", data, "image/png")})


def canonical(answer: dict) -> dict:  # type: ignore[type-arg]
    """An answer with results of equal score in id order (fusion leaves the order of ties open)."""
    return {**answer, "results": sorted(answer["results"], key=lambda r: (-r["score"], r["id"]))}


@pytest.mark.parametrize(
    "options",
    [
        {"k": 5},
        {"k": 20, "class_filter": TINY_CLASSES[1]},
        {"k": 20, "min_similarity": 90},
        {"k": 20, "filter": BOOTS},
        {"k": 10, "text": "dress"},
        {"k": 6, "offset": 6},
        {"k": 8, "diverse": True},
        {"k": 10, "group_by_class": True},
    ],
    ids=lambda options: "+".join(options),
)
def test_a_raw_body_answers_exactly_what_the_multipart_upload_does(
    client: httpx.Client,
    example: tuple[dict, bytes],  # type: ignore[type-arg]
    options: dict[str, object],
) -> None:
    point, data = example
    response = raw(client, data, **options)
    assert response.status_code == 200, response.text
    uploaded = multipart(client, data, **options)
    assert uploaded.status_code == 200, uploaded.text
    assert canonical(response.json()) == canonical(uploaded.json())
    answer = response.json()
    results = answer["results"]
    assert results and len(results) <= int(str(options["k"]))
    # Each option took effect (not merely ignored by both endpoints alike).
    plain = raw(client, data, k=options["k"]).json()
    if "filter" in options:
        assert len(results) == TINY_PER_CLASS and {r["captions"]["article"] for r in results} == {"Ankle boot"}
    if "text" in options:
        assert answer["score_kind"] == "rrf" and "Dress" in {r["class"] for r in results}
    if "offset" in options:
        whole = raw(client, data, k=12).json()["results"]
        assert [r["id"] for r in results] == [r["id"] for r in whole[6:]] and answer["next_offset"] == 12
    if "diverse" in options:
        assert [r["id"] for r in results] != [r["id"] for r in plain["results"]]
        assert len({r["class"] for r in results}) >= len({r["class"] for r in plain["results"]})
    if "group_by_class" in options:
        assert sorted(r["class"] for r in results) == sorted(TINY_CLASSES)
    if not {"class_filter", "filter", "offset", "text"} & set(options):  # the image ranks its own image first
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
    ("no category", 400, "category: Field required"),
]


@pytest.mark.parametrize(("case", "status", "message"), BAD_RAW)
def test_bad_raw_bodies_and_categories_get_4xx_json(
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
    }.get(case, {})
    if case == "no category":
        response = client.post("/search_raw", content=good, headers={"Content-Type": "image/png"})
    else:
        response = raw(client, bodies.get(case, good), **params)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and body["status"] == status, body


BAD_OPTIONS = [
    ({"k": 0}, "k must be"),
    ({"k": 10**9}, "k must be"),
    ({"k": "ten"}, "k: Input should be a valid integer"),
    ({"min_similarity": 150}, "min_similarity: Input should be less than or equal to 100"),
    ({"class_filter": "x" * 1000}, "class_filter: String should have at most 200 characters"),
    ({"filter": {"must": [{"key": "colour", "match": {"value": "red"}}]}}, "filter.must[0].key: unknown column"),
    ({"filter": "{must: ["}, "filter: Input should be a valid dictionary"),
    ({"offset": -1}, "offset: Input should be greater than or equal to 0"),
    ({"text": "w" * 600}, "text: String should have at most 500 characters"),
    ({"diverse": "maybe"}, "diverse: Input should be a valid boolean"),
    ({"diverse": True, "text": "bag"}, "diverse"),
    ({"offset": 9_999, "k": 10}, "offset + k at most"),
    ({"group_by_class": True, "offset": 5}, "no offset, no diverse"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_a_bad_option_gets_the_400_and_the_message_search_gives(
    client: httpx.Client,
    example: tuple[dict, bytes],  # type: ignore[type-arg]
    options: dict[str, object],
    message: str,
) -> None:
    response, uploaded = raw(client, example[1], **options), multipart(client, example[1], **options)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and response.json()["status"] == 400, response.json()
    assert response.json() == uploaded.json()


def test_the_document_states_the_raw_body_and_the_query_options(client: httpx.Client) -> None:
    document = client.get("/docs.json").json()
    operation = document["paths"]["/search_raw"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert {"image/png", "image/jpeg", "image/webp"} <= set(body["content"])
    parameters = {p["name"]: p for p in operation["parameters"]}
    options = [name for name in SearchInput.model_fields if name != "image"]
    assert list(parameters) == options and {p["in"] for p in parameters.values()} == {"query"}
    assert {"filter", "text", "offset", "diverse", "group_by_class"} <= set(parameters)
    assert [name for name, p in parameters.items() if p["required"]] == ["category"]
    k = parameters["k"]["schema"]
    assert (k["minimum"], k["maximum"]) == (1, Settings(_env_file=None).max_k)
    assert parameters["filter"]["content"]["application/json"]["schema"]["type"] == "object"
    # The same schema as /search's multipart field, limits filled in from the server's settings.
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in search:
        search = document["components"]["schemas"][search["$ref"].rsplit("/", 1)[1]]
    for name, parameter in parameters.items():
        schema = parameter.get("schema") or parameter["content"]["application/json"]["schema"]
        form = {key: value for key, value in search["properties"][name].items() if (key, value) != ("default", None)}
        assert schema == form, name
    assert set(operation["responses"]) == {"200", "400", "404", "413", "503"}
