"""/search_raw's options are /search's: one model, the same query parameters, the same 400 messages.

Fast (no server): the query model is derived from ``SearchInput``, the OpenAPI parameters from
the query model, and a query string is read by the rules a multipart form is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError
from starlette.datastructures import QueryParams

from serving.contract import query_parameters
from serving.forms import field_values, query_values
from serving.schemas import SearchInput, SearchQuery, query_model

OPTIONS = [name for name in SearchInput.model_fields if name != "image"]


def test_the_raw_query_takes_every_option_of_search_field_by_field() -> None:
    assert list(SearchQuery.model_fields) == OPTIONS
    assert {"filter", "text", "offset", "diverse", "group_by_class"} <= set(OPTIONS)
    for name in OPTIONS:
        ours, theirs = SearchQuery.model_fields[name], SearchInput.model_fields[name]
        assert ours.annotation == theirs.annotation, name
        assert ours.metadata == theirs.metadata, name
        assert (ours.default, ours.description, ours.is_required()) == (
            theirs.default,
            theirs.description,
            theirs.is_required(),
        ), name
    body = SearchInput.model_json_schema()
    query = SearchQuery.model_json_schema()
    assert query["properties"] == {name: body["properties"][name] for name in OPTIONS}
    assert query["required"] == ["category"]


def test_an_option_added_to_the_body_model_is_a_query_option() -> None:
    class Wider(SearchInput):
        colour: Annotated[str | None, Field(description="A new option", max_length=10)] = None

    derived = query_model(Wider)
    assert "colour" in derived.model_fields and "image" not in derived.model_fields
    assert "colour" in {p["name"] for p in query_parameters(derived)}


def test_the_document_lists_each_option_as_a_query_parameter_with_its_schema() -> None:
    body = SearchInput.model_json_schema()["properties"]
    parameters = {p["name"]: p for p in query_parameters(SearchQuery)}
    assert list(parameters) == OPTIONS
    for name, parameter in parameters.items():
        assert parameter["in"] == "query" and parameter["required"] == (name == "category")
        assert parameter["description"] == body[name]["description"]
        schema = parameter["content"]["application/json"]["schema"] if name == "filter" else parameter["schema"]
        assert schema == not_null(body[name]), name
    assert parameters["class_filter"]["schema"]["type"] == "string"
    assert "schema" not in parameters["filter"]  # JSON text, not one parameter per key


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema as a query parameter documents it: its null option and null default dropped."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    rest = {key: value for key, value in schema.items() if key != "anyOf" and (key, value) != ("default", None)}
    return {**rest, **options[0]} if options else schema


def errors_of(model: Any, values: dict[str, Any]) -> list[tuple[Any, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(values)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


BAD = [
    ("k", "ten"),
    ("min_similarity", "150"),
    ("class_filter", "x" * 1000),
    ("filter", "{must: ["),
    ("filter", "[1, 2]"),
    ("offset", "-1"),
    ("offset", "100000"),
    ("text", "w" * 600),
    ("diverse", "maybe"),
    ("group_by_class", "2"),
    ("category", "c" * 200),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_value_in_the_query_fails_as_in_the_form(name: str, value: str, tmp_path: Path) -> None:
    texts = {"category": ["tiny"], name: [value]}
    query = query_values(SearchQuery, QueryParams({key: values[0] for key, values in texts.items()}))
    assert query == field_values(SearchInput, texts)
    image = tmp_path / "upload.png"
    image.write_bytes(b"an upload")
    form = {**field_values(SearchInput, texts), "image": image}
    got = errors_of(SearchQuery, query)
    assert got == errors_of(SearchInput, form) and got[0][0] == (name,)


def test_query_values_are_read_as_form_values() -> None:
    params = QueryParams(
        "category=tiny&k=5&filter=%7B%22must%22%3A%5B%5D%7D&diverse=true&text=8&class_filter=7&offset=3"
    )
    query = SearchQuery.model_validate(query_values(SearchQuery, params))
    assert query.model_dump() == {
        "k": 5,
        "min_similarity": 0.0,
        "class_filter": "7",  # a text field keeps its text: a class named "7" is no number
        "filter": {"must": []},
        "offset": 3,
        "group_by_class": False,
        "category": "tiny",
        "text": "8",
        "diverse": True,
    }
    missing = errors_of(SearchQuery, query_values(SearchQuery, QueryParams("k=3")))
    assert missing == [(("category",), "Field required")]
