"""The search features over HTTP on the indexed demo category: filters, caption text, hybrid,
recommend, diversity, best per class, vectors with their model version, pages, duplicates, facets,
honest similarity, and the 400s naming the wrong field."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from tests.helpers import PLAIN, TINY, TINY_CLASSES, TINY_PER_CLASS, jpeg, photo

pytestmark = pytest.mark.slow
ALL = len(TINY_CLASSES) * TINY_PER_CLASS
BOOTS = {"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}


@pytest.fixture(scope="module")
def examples(client: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    response = client.get(f"/categories/{TINY}/examples", params={"limit": ALL})
    assert response.status_code == 200, response.text
    return response.json()


def image_of(client: httpx.Client, example: dict) -> bytes:  # type: ignore[type-arg]
    return client.get(example["image_url"]).content


def search(client: httpx.Client, image: bytes, **fields: object) -> httpx.Response:
    """POST /search as a browser form would: every non-file field a form value, the filter as JSON text."""
    data = {k: json.dumps(v) if isinstance(v, dict | bool) else str(v) for k, v in fields.items()}
    return client.post("/search", data={"category": TINY, **data}, files={"image": ("q.png", image, "image/png")})


def ok(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_filtered_query_returns_only_matching_rows(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    image = image_of(client, examples[0])
    boots = ok(search(client, image, k=ALL, filter=BOOTS))["results"]
    assert len(boots) == TINY_PER_CLASS and {r["captions"]["article"] for r in boots} == {"Ankle boot"}
    by_id = ok(
        client.post("/search_by_id", json={"category": TINY, "point_id": examples[0]["id"], "k": ALL, "filter": BOOTS})
    )
    assert by_id["results"] and {r["captions"]["article"] for r in by_id["results"]} == {"Ankle boot"}
    ranged = {
        "must": [{"key": "label", "range": {"gte": 7}}],
        "must_not": [{"key": "class", "match": {"any": ["Bag"]}}],
    }
    files = [("images", (f"{i}.png", image_of(client, e), "image/png")) for i, e in enumerate(examples[:2])]
    batch = ok(
        client.post("/search_batch", data={"category": TINY, "k": ALL, "filter": json.dumps(ranged)}, files=files)
    )
    for results in batch["results"]:
        assert len(results) == 2 * TINY_PER_CLASS and {r["class"] for r in results} == {"Sneaker", "Ankle-boot"}


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"must": [{"key": "colour", "match": {"value": "red"}}]}, "filter.must[0].key: unknown column 'colour'"),
        ({"must": [{"key": "label", "match": {"value": "seven"}}]}, "column 'label' is integer"),
        ({"must": [{"key": "article", "range": {"gte": 1}}]}, "filter.must[0].range: column 'article' is keyword"),
        ({"must": "article"}, "filter.must"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(
    client: httpx.Client,
    examples: list[dict],  # type: ignore[type-arg]
    flt: dict,  # type: ignore[type-arg]
    message: str,
) -> None:
    for response in (
        search(client, image_of(client, examples[0]), filter=flt),
        client.post("/search_by_id", json={"category": TINY, "point_id": examples[0]["id"], "filter": flt}),
        client.post("/search_text", json={"category": TINY, "text": "boot", "filter": flt}),
    ):
        assert response.status_code == 400, response.text
        assert message in response.json()["error"] and response.json()["status"] == 400
    not_json = search(client, image_of(client, examples[0]), filter="{must: [")
    assert not_json.status_code == 400 and "filter" in not_json.json()["error"]


def test_a_text_query_returns_only_images_whose_captions_hold_the_word(client: httpx.Client) -> None:
    answer = ok(client.post("/search_text", json={"category": TINY, "text": "boot", "k": ALL}))
    assert answer["score_kind"] == "bm25" and len(answer["results"]) == TINY_PER_CLASS
    assert all("boot" in r["captions"]["article"].lower() for r in answer["results"])
    assert all(r["calibrated"] is None for r in answer["results"])
    no_captions = client.post("/search_text", json={"category": PLAIN, "text": "boot"})
    assert no_captions.status_code == 400 and "no caption columns" in no_captions.json()["error"]


def test_hybrid_search_fuses_the_image_and_the_text(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    bag = next(e for e in examples if e["class"] == "Bag")
    answer = ok(search(client, image_of(client, bag), text="dress", k=10))
    assert answer["score_kind"] == "rrf"
    assert {"Bag", "Dress"} <= {r["class"] for r in answer["results"]}


def test_adding_a_negative_example_lowers_the_rank_of_its_class(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    positive = next(e for e in examples if e["class"] == "Ankle-boot")
    plain = ok(client.post("/recommend", json={"category": TINY, "positive": [positive["id"]], "k": ALL}))["results"]
    rival = next(r for r in plain if r["class"] != positive["class"])
    body = {"category": TINY, "positive": [positive["id"]], "negative": [rival["id"]], "k": ALL}
    pushed = ok(client.post("/recommend", json=body))
    assert pushed["score_kind"] == "recommend"

    def mean_rank(results: list[dict]) -> float:  # type: ignore[type-arg]
        return float(
            np.mean([i for i, r in enumerate(results) if r["class"] == rival["class"] and r["id"] != rival["id"]])
        )

    assert mean_rank(pushed["results"]) > mean_rank(plain)
    assert not {positive["id"], rival["id"]} & {r["id"] for r in pushed["results"]}
    # Multipart: an uploaded positive image with a stored negative id (a JSON array in the form).
    files = [("positive_images", ("p.png", image_of(client, positive), "image/png"))]
    form = {"category": TINY, "negative": json.dumps([rival["id"]]), "k": "3"}
    uploaded = ok(client.post("/recommend", data=form, files=files))
    assert uploaded["results"][0]["id"] == positive["id"]
    # Repeated form fields are a list too, and a text field keeps its text (a class named "8" is no number).
    form = {"category": TINY, "positive": [positive["id"], rival["id"]], "class_filter": "8", "k": "3"}
    assert ok(client.post("/recommend", data=form, files=files))["results"] == []
    none = client.post("/recommend", json={"category": TINY, "negative": [rival["id"]]})
    assert none.status_code == 400 and "at least one positive" in none.json()["error"]
    unknown = client.post("/recommend", json={"category": TINY, "positive": ["no-such-id"]})
    assert unknown.status_code == 404


def test_pages_diversity_and_best_per_class(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    image = image_of(client, examples[0])
    whole = ok(search(client, image, k=12))
    first, second = ok(search(client, image, k=6)), ok(search(client, image, k=6, offset=6))
    assert [r["id"] for r in first["results"] + second["results"]] == [r["id"] for r in whole["results"]]
    assert first["next_offset"] == 6 and second["next_offset"] == 12
    assert ok(search(client, image, k=10, offset=ALL - 5))["next_offset"] is None
    diverse = ok(search(client, image, k=8, diverse=True))["results"]
    assert diverse[0]["id"] == whole["results"][0]["id"]
    assert len({r["class"] for r in diverse}) >= len({r["class"] for r in whole["results"][:8]})
    best = ok(search(client, image, k=10, group_by_class=True))["results"]
    assert sorted(r["class"] for r in best) == sorted(TINY_CLASSES)
    refused = search(client, image, diverse=True, text="bag")
    assert refused.status_code == 400 and "diverse" in refused.json()["error"]


def test_similarity_is_calibrated_and_an_unusual_query_gets_a_notice(
    client: httpx.Client, examples: list[dict]
) -> None:  # type: ignore[type-arg]
    answer = ok(search(client, image_of(client, examples[0]), k=3))
    assert answer["notice"] is None and answer["results"][0]["calibrated"] == 100.0
    assert answer["model_version"] and answer["score_kind"] == "cosine"
    astronaut = ok(search(client, jpeg(photo(1)), k=3))  # a coffee cup
    assert astronaut["notice"] == "unlike anything in this category"
    assert all(0 <= r["calibrated"] <= 100 for r in astronaut["results"])


def test_a_vector_of_another_version_or_dimension_is_refused(client: httpx.Client, examples: list[dict]) -> None:  # type: ignore[type-arg]
    request = {"category": TINY, "image": base64.b64encode(image_of(client, examples[0])).decode()}
    [outcome] = ok(client.post("/embed", json={"requests": [request]}))
    version, vector = outcome["model_version"], outcome["vector"]
    assert version and vector
    found = ok(
        client.post("/search_vector", json={"category": TINY, "vector": vector, "model_version": version, "k": 3})
    )
    assert found["results"][0]["id"] == examples[0]["id"] and found["model_version"] == version
    other = client.post("/search_vector", json={"category": TINY, "vector": vector, "model_version": "0123456789ab"})
    assert other.status_code == 409
    assert "0123456789ab" in other.json()["error"] and version in other.json()["error"]
    short = client.post("/search_vector", json={"category": TINY, "vector": vector[:5], "model_version": version})
    assert short.status_code == 400 and f"uses {len(vector)}" in short.json()["error"]


def test_duplicates_page_through_the_pairs(client: httpx.Client) -> None:
    whole = ok(client.get(f"/duplicates/{TINY}", params={"limit": 100}))
    assert whole["threshold"] == 0.97 and whole["total"] == len(whole["pairs"])
    for pair in whole["pairs"]:
        assert pair["similarity"] >= 97 and pair["first"]["id"] != pair["second"]["id"]
        assert pair["first"]["image_url"].startswith(f"/images/{TINY}/")
    pages, offset = [], 0
    while offset is not None:
        page = ok(client.get(f"/duplicates/{TINY}", params={"offset": offset, "limit": 1}))
        pages += page["pairs"]
        offset = page["next_offset"]
        assert len(pages) <= whole["total"]
    assert pages == whole["pairs"]
    assert client.get("/duplicates/nope").status_code == 404
    assert client.get(f"/duplicates/{TINY}", params={"limit": 0}).status_code == 422


def test_categories_name_their_filterable_columns_and_facets_count_values(client: httpx.Client) -> None:
    tiny = next(c for c in ok(client.get("/categories")) if c["name"] == TINY)
    assert tiny["filterable"] == {"article": "keyword", "class": "keyword", "label": "integer", "source": "text"}
    assert tiny["captions"] == ["article", "source"]
    facets = ok(client.get(f"/categories/{TINY}/facets/class"))
    assert {f["value"]: f["count"] for f in facets} == dict.fromkeys(TINY_CLASSES, TINY_PER_CLASS)
    text_column = client.get(f"/categories/{TINY}/facets/source")
    assert text_column.status_code == 400 and "keyword column" in text_column.json()["error"]


def test_the_document_states_the_new_endpoints_and_options(client: httpx.Client) -> None:
    spec = ok(client.get("/docs.json"))
    paths = spec["paths"]
    for path in ("/search_text", "/search_vector", "/recommend", "/duplicates/{category}"):
        assert path in paths, path
    assert "/categories/{category}/facets/{column}" in paths
    form = paths["/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"filter", "text", "offset", "diverse", "group_by_class"} <= set(form)
    assert "409" in paths["/search_vector"]["post"]["responses"]
