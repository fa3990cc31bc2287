"""The real service over HTTP: `bentoml serve` on a loopback port, on the indexed tiny category.

Every endpoint, its answers and its error cases (4xx JSON with a message, never a 5xx).
"""

from __future__ import annotations

import base64
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS
from tests.service.uploads import png_claiming
from visearch.settings import MAX_FORM_FILES, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples(client: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    response = client.get(f"/categories/{TINY}/examples", params={"limit": 40})
    assert response.status_code == 200, response.text
    return response.json()


def image_bytes(client: httpx.Client, example: dict) -> bytes:  # type: ignore[type-arg]
    response = client.get(example["image_url"])
    assert response.status_code == 200
    return response.content


# --- health, docs, categories -------------------------------------------------------------------
def test_health_readiness_and_metrics(client: httpx.Client) -> None:
    for path in ("/readyz", "/livez", "/healthz"):
        assert client.get(path).status_code == 200, path
    client.get("/categories")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "bentoml_service_request" in metrics.text


def test_openapi_documents_every_endpoint(client: httpx.Client) -> None:
    spec = client.get("/docs.json").json()
    expected = {
        "/search",
        "/search_by_id",
        "/search_batch",
        "/embed",
        "/categories",
        "/categories/{category}/examples",
        "/images/{category}/{point_id}",
        "/readyz",
        "/livez",
        "/healthz",
        "/metrics",
    }
    assert expected <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_categories_list_titles_texts_and_counts(client: httpx.Client) -> None:
    categories = {c["name"]: c for c in client.get("/categories").json()}
    tiny = categories[TINY]
    assert tiny["title"] and tiny["business_usage"] and tiny["credits"]
    assert tiny["image_count"] == len(TINY_CLASSES) * TINY_PER_CLASS and tiny["indexed"] is True
    assert categories["shoes"]["indexed"] is False and categories["shoes"]["image_count"] == 0


# --- searches -------------------------------------------------------------------------------------
def test_search_by_upload_finds_the_image_itself_first(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    query = examples[0]
    files = {"image": ("query.png", image_bytes(client, query), "image/png")}
    response = client.post("/search", data={"category": TINY, "k": 5}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["category"] == TINY and len(body["results"]) == 5
    first = body["results"][0]
    assert first["id"] == query["id"] and first["similarity"] > 99
    assert set(first) == {"id", "score", "similarity", "calibrated", "class", "file", "captions", "image_url"}
    assert first["class"] == query["class"] and first["file"] == query["file"]
    assert "article" in first["captions"]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    fetched = client.get(first["image_url"])
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.content == files["image"][1]


def test_uploads_are_spooled_inside_the_data_home_only(
    client: httpx.Client, indexed_home: Settings, server_tmpdir: Path, good: bytes
) -> None:
    """Uploads go to ``<home>/tmp``, and nothing to the system temp dir (the server's TMPDIR, empty at its start)."""
    assert upload(client, good, k=1).status_code == 200
    assert client.post("/search_batch", data={"category": TINY}, files=[("images", ("a.png", good))]).status_code == 200
    # BentoML keeps a pool of request temp dirs (made by the first upload, then reused), so what
    # any upload of this server ever spooled outside the home would still be there: none may be.
    # Not uploads: onnxruntime's telemetry session id ($TMPDIR/.ses, written when the model is first
    # loaded) and the sockets of BentoML's supervisor, which starts before the service moves tempfile.
    others = {server_tmpdir / ".ses", *server_tmpdir.glob("bentoml-uds-*")}
    outside = sorted(str(path) for path in server_tmpdir.rglob("*") if not others & {path, *path.parents})
    assert not outside, f"the server wrote to the system temp dir: {outside}"
    spooled = list((indexed_home.home / "tmp").glob("bentoml-request-*"))
    assert spooled, "BentoML's request temp dirs belong in <home>/tmp"


def test_search_options_filter_results(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    query = examples[0]
    data = image_bytes(client, query)
    other = next(c for c in TINY_CLASSES if c != query["class"])
    filtered = client.post(
        "/search", data={"category": TINY, "k": 20, "class_filter": other}, files={"image": ("q.png", data)}
    ).json()["results"]
    assert filtered and {r["class"] for r in filtered} == {other}
    strict = client.post(
        "/search", data={"category": TINY, "k": 20, "min_similarity": 90}, files={"image": ("q.png", data)}
    ).json()["results"]
    assert strict and all(r["similarity"] >= 90 for r in strict)


def test_more_like_this_excludes_the_stored_image(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    query = examples[1]
    response = client.post("/search_by_id", json={"category": TINY, "point_id": query["id"], "k": 4})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 4 and query["id"] not in {r["id"] for r in results}


def test_batch_search_answers_each_image_in_order(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    chosen = examples[:3]
    files = [("images", (f"{i}.png", image_bytes(client, e), "image/png")) for i, e in enumerate(chosen)]
    response = client.post("/search_batch", data={"category": TINY, "k": 3}, files=files)
    assert response.status_code == 200, response.text
    lists = response.json()["results"]
    assert [results[0]["id"] for results in lists] == [e["id"] for e in chosen]
    assert all(len(results) == 3 for results in lists)


def test_examples_and_images(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    assert len(examples) == len(TINY_CLASSES) * TINY_PER_CLASS
    assert {e["class"] for e in examples} == set(TINY_CLASSES)
    image = Image.open(io.BytesIO(image_bytes(client, examples[2])))
    assert image.size == (28, 28)


# --- errors -----------------------------------------------------------------------------------------
def upload(client: httpx.Client, data: bytes, **fields: object) -> httpx.Response:
    return client.post("/search", data={"category": TINY, **fields}, files={"image": ("x.png", data)})


@pytest.fixture(scope="module")
def good(client: httpx.Client, examples: list[dict]) -> bytes:  # type: ignore[type-arg]
    return image_bytes(client, examples[0])


BAD_UPLOADS = [
    ("empty file", 400, "empty image"),
    ("non-image", 400, "not a supported image"),
    ("truncated", 400, "truncated"),
    ("bomb header", 413, "pixels"),
    ("oversized", 413, "upload too large"),
    ("unknown category", 404, "unknown category"),
    ("category without index", 404, "no index yet"),
    ("k = 0", 400, "k must be"),
    ("k negative", 400, "k must be"),
    ("k huge", 400, "k must be"),
    ("k not an integer", 400, "k: Input should be a valid integer"),
    ("min similarity over 100", 400, "min_similarity"),
    ("min similarity negative", 400, "min_similarity"),
    ("class filter too long", 400, "class_filter: String should have at most 200 characters"),
    ("text in the file field", 400, "expected an uploaded file"),
    ("URL in the file field", 400, "expected an uploaded file"),
    ("no image", 400, "image: Field required"),
]


def send_bad_upload(client: httpx.Client, good: bytes, case: str) -> httpx.Response:
    """The bad upload named ``case`` (one of BAD_UPLOADS)."""
    if case == "empty file":
        return upload(client, b"")
    if case == "non-image":
        return upload(client, b"%PDF-1.4 definitely not an image")
    if case == "truncated":
        return upload(client, good[: len(good) // 2])
    if case == "bomb header":
        return upload(client, png_claiming(20000, 20000))
    if case == "oversized":
        return upload(client, good + b"\0" * (11 * 1024 * 1024))
    if case == "unknown category":
        return upload(client, good, category="no-such-category")
    if case == "category without index":
        return upload(client, good, category="shoes")
    if case.startswith("k"):
        k = {"k = 0": 0, "k negative": -3, "k huge": 10**9, "k not an integer": "ten"}[case]
        return upload(client, good, k=k)
    if case.startswith("min similarity"):
        return upload(client, good, min_similarity=150 if "over" in case else -1)
    if case == "class filter too long":
        return upload(client, good, class_filter="x" * 1000)
    if case in ("text in the file field", "URL in the file field"):
        value = "hello" if case.startswith("text") else "http://127.0.0.1:1/secret"
        return client.post("/search", data={"category": TINY}, files={"image": (None, value)})
    assert case == "no image", case
    return client.post("/search", data={"category": TINY})


@pytest.mark.parametrize(("case", "status", "message"), BAD_UPLOADS)
def test_bad_uploads_get_4xx_json(client: httpx.Client, good: bytes, case: str, status: int, message: str) -> None:
    response = send_bad_upload(client, good, case)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and body["status"] == status
    assert "Traceback" not in response.text


BAD_MORE_LIKE_THIS = [
    ({"category": TINY, "point_id": "00000000-0000-0000-0000-000000000000"}, 404, "no image with id"),
    ({"category": TINY, "point_id": "../../etc/passwd"}, 404, "invalid point id"),
    ({"category": "../../etc", "point_id": "00000000-0000-0000-0000-000000000000"}, 404, "unknown category"),
    ({"category": TINY, "point_id": "x", "k": 0}, 400, "k must be"),
    ({"category": TINY}, 400, "point_id: Field required"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_MORE_LIKE_THIS)
def test_bad_more_like_this_requests(client: httpx.Client, body: dict, status: int, message: str) -> None:  # type: ignore[type-arg]
    response = client.post("/search_by_id", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_malformed_json_and_batch_limits(client: httpx.Client, good: bytes) -> None:
    bad_json = client.post("/search_by_id", content=b"{", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "Invalid JSON" in bad_json.json()["error"]
    too_many = [("images", (f"{i}.png", good)) for i in range(17)]
    response = client.post("/search_batch", data={"category": TINY}, files=too_many)
    assert response.status_code == 400 and "1 to 16 images" in response.json()["error"]
    one_bad = [("images", ("a.png", good)), ("images", ("b.png", b"junk"))]
    response = client.post("/search_batch", data={"category": TINY}, files=one_bad)
    assert response.status_code == 400 and "not a supported image" in response.json()["error"]


BAD_GETS = [
    (f"/images/{TINY}/00000000-0000-0000-0000-000000000000", 404),
    (f"/images/{TINY}/..%2F..%2Fetc%2Fpasswd", 404),
    ("/images/no-such-category/00000000-0000-0000-0000-000000000000", 404),
    ("/images/shoes/00000000-0000-0000-0000-000000000000", 404),
    (f"/categories/{TINY}/examples?limit=0", 422),
    (f"/categories/{TINY}/examples?limit=abc", 422),
    ("/categories/no-such-category/examples", 404),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
def test_bad_get_requests(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text


def raw_get(server: str, target: str) -> bytes:
    """The answer to ``GET target`` sent as a raw request line (httpx would normalise "..")."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_path_traversal_in_the_raw_url_does_not_escape(server: str) -> None:
    answer = raw_get(server, f"/images/{TINY}/../../../../etc/passwd")
    assert answer.startswith(b"HTTP/1.1 404") and b"root:" not in answer


def test_the_service_is_still_ready_after_all_that(client: httpx.Client, server: str, good: bytes) -> None:
    """Every bad request of the tests above, sent here in a row: 4xx answers, and the service stays ready."""
    for case, status, _ in BAD_UPLOADS:
        assert send_bad_upload(client, good, case).status_code == status, case
    for body, status, _ in BAD_MORE_LIKE_THIS:
        assert client.post("/search_by_id", json=body).status_code == status, body
    for path, status in BAD_GETS:
        assert client.get(path).status_code == status, path
    assert client.post("/search_by_id", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    too_many = [("images", (f"{i}.png", good)) for i in range(17)]
    assert client.post("/search_batch", data={"category": TINY}, files=too_many).status_code == 400
    for route in ("/search", "/search_batch", "/search_by_id", "/embed"):
        response = client.post(route, content=b'{"a": 1}', headers={"content-type": "multipart/form-data"})
        assert response.status_code == 400, route
    assert raw_get(server, f"/images/{TINY}/../../../../etc/passwd").startswith(b"HTTP/1.1 404")
    assert client.get("/readyz").status_code == 200


# --- embeddings (adaptive batching) -------------------------------------------------------------
def test_embed_gives_one_outcome_per_item(client: httpx.Client, good: bytes) -> None:
    items = [
        {"category": TINY, "image": base64.b64encode(good).decode()},
        {"category": TINY, "image": base64.b64encode(b"junk").decode()},
        {"category": "no-such-category", "image": base64.b64encode(good).decode()},
    ]
    response = client.post("/embed", json={"requests": items})
    assert response.status_code == 200, response.text
    ok, bad, unknown = response.json()
    assert ok["status"] == 200 and ok["vector"] and abs(sum(x * x for x in ok["vector"]) - 1) < 1e-4  # L2-normalised
    assert bad["status"] == 400 and "not a supported image" in bad["error"] and bad["vector"] is None
    assert unknown["status"] == 404 and "unknown category" in unknown["error"]


def test_concurrent_embeds_are_batched_and_equal_single_ones(server: str, examples: list[dict]) -> None:  # type: ignore[type-arg]
    with httpx.Client(base_url=server, timeout=60) as client:
        payloads = [base64.b64encode(image_bytes(client, e)).decode() for e in examples[:16]]

        def embed(data: str) -> list[float]:
            response = client.post("/embed", json={"requests": [{"category": TINY, "image": data}]})
            assert response.status_code == 200, response.text
            return response.json()[0]["vector"]

        alone = [embed(data) for data in payloads[:4]]
        before = embed_batches(client.get("/metrics").text)
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(embed, payloads * 2))
        after = embed_batches(client.get("/metrics").text)
    for single, merged in zip(alone, together, strict=False):
        assert max(abs(a - b) for a, b in zip(single, merged, strict=True)) < 1e-5
    # Batches of one are observed too: only a batch of two or more calls shows that calls were merged.
    assert after[0] > before[0], "no /embed batch was observed"
    assert after[1] > before[1], f"32 concurrent /embed calls all ran alone: {after}"


def embed_batches(metrics: str) -> tuple[float, float]:
    """From BentoML's histogram of adaptive batch sizes of /embed: (batches, batches of more than one call)."""
    from prometheus_client.parser import text_string_to_metric_families

    batches = of_one = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.labels.get("method_name") != "embed":
                continue
            if sample.name == "bentoml_service_adaptive_batch_size_count":
                batches += sample.value
            elif sample.name == "bentoml_service_adaptive_batch_size_bucket" and float(sample.labels["le"]) == 1.0:
                of_one += sample.value  # cumulative: the batches of at most one call
    return batches, batches - of_one


@pytest.mark.parametrize("route", ["/search", "/search_batch", "/search_by_id", "/embed"])
def test_malformed_multipart_is_a_400(client: httpx.Client, route: str) -> None:
    for content_type, body, message in (
        ("multipart/form-data", b'{"a": 1}', "malformed multipart body"),  # no boundary
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken", "Field required"),  # no usable part
    ):
        response = client.post(route, content=body, headers={"content-type": content_type})
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]


def test_a_form_with_more_files_than_any_endpoint_takes_is_a_400(client: httpx.Client) -> None:
    files = [("positive_images", (f"{i}.png", b"x", "image/png")) for i in range(MAX_FORM_FILES + 1)]
    response = client.post("/recommend", files=files, data={"category": TINY})
    assert response.status_code == 400, response.text
    assert "Too many files" in response.json()["error"]
    # As many as an endpoint takes are read (and then judged as images).
    response = client.post("/recommend", files=files[:2], data={"category": TINY})
    assert response.status_code == 400 and "Too many files" not in response.json()["error"]


def test_unmatched_paths_under_the_api_prefixes_get_json_404(client: httpx.Client) -> None:
    response = client.get(f"/images/{TINY}/a%2Fb/c")
    assert response.status_code == 404 and "no such resource" in response.json()["error"]


def variant(data: bytes, kind: str) -> bytes:
    """The query image re-encoded as an unusual but valid image."""
    image = Image.open(io.BytesIO(data)).convert("L")
    out = io.BytesIO()
    if kind == "animated GIF":
        frames = [image.convert("P"), Image.eval(image, lambda v: 255 - v).convert("P")]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif kind == "CMYK JPEG":
        image.convert("CMYK").save(out, format="JPEG", quality=95)
    elif kind == "16-bit PNG":
        Image.fromarray(np.asarray(image).astype(np.uint16) * 257).save(out, format="PNG")  # mode I;16
    elif kind == "RGBA PNG":
        rgba = image.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(out, format="PNG")
    elif kind == "upright JPEG":
        image.convert("RGB").save(out, format="JPEG", quality=95)
    elif kind == "EXIF-rotated JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display": stored turned the other way
        image.convert("RGB").rotate(90, expand=True).save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("kind", ["animated GIF", "CMYK JPEG", "16-bit PNG", "RGBA PNG"])
def test_unusual_valid_images_are_answered(client: httpx.Client, examples: list[dict], kind: str) -> None:  # type: ignore[type-arg]
    query = examples[0]
    response = upload(client, variant(image_bytes(client, query), kind), k=3)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == query["id"]


def test_exif_rotation_is_applied(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    data = image_bytes(client, examples[3])
    upright = upload(client, variant(data, "upright JPEG"), k=3).json()["results"]
    rotated = upload(client, variant(data, "EXIF-rotated JPEG"), k=3).json()["results"]
    # JPEG blocks fall differently on the turned pixels: same best match, nearly the same score.
    assert rotated[0]["id"] == upright[0]["id"] == examples[3]["id"]
    assert rotated[0]["score"] == pytest.approx(upright[0]["score"], abs=0.02)


# --- the OpenAPI contract (schemathesis checks it in depth: test_service_reliability.py) -------------
def test_the_openapi_document_states_ranges_required_bodies_and_error_bodies(client: httpx.Client) -> None:
    document = client.get("/docs.json").json()
    search = document["paths"]["/search"]["post"]
    form = search["requestBody"]["content"]["multipart/form-data"]
    assert search["requestBody"]["required"] is True
    k, similarity = form["schema"]["properties"]["k"], form["schema"]["properties"]["min_similarity"]
    assert (k["minimum"], k["maximum"]) == (1, Settings(_env_file=None).max_k)
    assert (similarity["minimum"], similarity["maximum"]) == (0, 100)
    assert form["encoding"]["image"]["contentType"].startswith("image/png")
    batch = document["paths"]["/search_batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert batch["schema"]["properties"]["images"]["maxItems"] == Settings(_env_file=None).max_batch_images
    assert set(search["responses"]) == {"200", "400", "404", "413", "503"}
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {"application/json": {"schema": error_body}}, (method, path, status)
    assert "x-visearch-settings" not in json.dumps(document)


def test_an_image_part_without_filename_is_an_upload(client: httpx.Client, good: bytes) -> None:
    """RFC 7578 makes the filename a SHOULD: a part with an image Content-Type is a file all the same."""
    response = client.post("/search", data={"category": TINY, "k": "1"}, files={"image": (None, good, "image/png")})
    assert response.status_code == 200, response.text
    batch = client.post("/search_batch", data={"category": TINY}, files=[("images", (None, good, "image/png"))])
    assert batch.status_code == 200, batch.text


def test_every_error_answer_is_error_body_json(client: httpx.Client) -> None:
    for response in (
        client.get("/images/x%0A/y"),  # no route matches a newline: Starlette's own 404
        client.post("/admin/rollback", content=b"\xff{", headers={"content-type": "application/json"}),
        client.get(f"/categories/{TINY}/examples", params={"limit": 0}),
    ):
        assert response.headers["content-type"] == "application/json", response.text
        body = response.json()
        assert set(body) == {"error", "status"} and body["status"] == response.status_code and body["error"]
