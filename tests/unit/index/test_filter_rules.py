"""The search filter's rules: what a category's columns accept, and the place each refusal names.

Every refusal is the message a user of the CLI, the REST API or the UI reads (a 400 there). Fast: no
engine (tests/unit/index/test_search_primitives.py runs checked filters on both engines).
"""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import models

from visearch.errors import InvalidQueryError
from visearch.index.filters import MAX_CONDITIONS, MAX_DEPTH, clauses, parse_filter

FIELDS = {"class": "keyword", "label": "integer", "weight": "float", "note": "text"}


def cond(key: str, **condition: Any) -> dict[str, Any]:
    return {"key": key, **condition}


def refused(raw: Any) -> str:
    with pytest.raises(InvalidQueryError) as caught:
        parse_filter(raw, FIELDS)
    return str(caught.value)


def test_no_filter_is_none() -> None:
    assert parse_filter(None, FIELDS) is None
    assert parse_filter({}, FIELDS) is None


def test_a_filter_must_be_a_json_object() -> None:
    assert refused("class=Bag") == "filter must be a JSON object, got str"
    assert refused([{"key": "class"}]) == "filter must be a JSON object, got list"


@pytest.mark.parametrize(
    "condition",
    [
        cond("class", match={"value": "Bag"}),
        cond("class", match={"any": ["Bag", "Boot"]}),
        cond("class", match={"except": ["Bag"]}),
        cond("label", match={"value": 3}),
        cond("label", match={"any": [1, 2]}),
        cond("label", range={"gte": 1}),
        cond("label", range={"lt": 9}),
        cond("weight", range={"gt": 0.5, "lte": 2}),
        cond("note", match={"text": "red leather"}),
    ],
)
def test_each_kind_of_column_takes_its_conditions(condition: dict[str, Any]) -> None:
    parsed = parse_filter({"must": [condition]}, FIELDS)
    assert parsed is not None
    assert [(name, [c.key for c in found]) for name, found in clauses(parsed)] == [("must", [condition["key"]])]


def test_clauses_lists_each_present_clause_as_a_list() -> None:
    parsed = parse_filter(
        {"must": cond("class", match={"value": "Bag"}), "must_not": [cond("label", match={"value": 1})]}, FIELDS
    )
    assert parsed is not None
    assert [(name, len(found)) for name, found in clauses(parsed)] == [("must", 1), ("must_not", 1)]
    assert list(clauses(models.Filter())) == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            cond("colour", match={"value": "red"}),
            "filter.must[0].key: unknown column 'colour'; filterable: class, label, note, weight",
        ),
        (
            cond("label", range={"gte": 1}, match={"value": 1}),
            "filter.must[0]: a condition on 'label' takes exactly one of match or range",
        ),
        (cond("label"), "filter.must[0]: a condition on 'label' takes exactly one of match or range"),
        (
            cond("class", values_count={"gt": 1}),
            "filter.must[0]: a condition on 'class' takes exactly one of match or range",
        ),
        (
            cond("class", match={"value": "Bag"}, values_count={"gt": 1}),
            "filter.must[0]: a condition on 'class' takes exactly one of match or range",
        ),
        (
            cond("class", range={"gte": 1}),
            "filter.must[0].range: column 'class' is keyword; range needs an integer or float column",
        ),
        (
            cond("note", range={"gte": 1}),
            "filter.must[0].range: column 'note' is text; range needs an integer or float column",
        ),
        (
            cond("label", range={"gte": "2020-01-01T00:00:00"}),
            "filter.must[0].range: column 'label' is integer; range needs an integer or float column",
        ),
        (cond("label", range={}), "filter.must[0].range: give at least one of gte, gt, lte, lt"),
        (
            cond("class", match={"text": "bag"}),
            "filter.must[0].match.text: column 'class' is keyword; text match needs a text column",
        ),
        (cond("note", match={"value": "red"}), "filter.must[0].match.value: column 'note' is text; use match.text"),
        (cond("weight", match={"value": 1}), "filter.must[0].match.value: column 'weight' is float; use range"),
        (cond("weight", match={"any": [1]}), "filter.must[0].match.any: column 'weight' is float; use range"),
        (cond("class", match={"value": 3}), "filter.must[0].match.value: column 'class' is keyword; 3 is not"),
        (cond("label", match={"value": "3"}), "filter.must[0].match.value: column 'label' is integer; '3' is not"),
        (cond("label", match={"value": True}), "filter.must[0].match.value: column 'label' is integer; True is not"),
        (
            cond("label", match={"any": ["Bag", "Boot"]}),
            "filter.must[0].match.any: column 'label' is integer; 'Bag' is not",
        ),
        (
            cond("class", match={"except": [1, 2]}),
            "filter.must[0].match.except: column 'class' is keyword; 1 is not",
        ),
        (cond("class", match={"phrase": "a b"}), "filter.must[0].match: use value, any, except or text"),
        ({"has_id": ["a"]}, "filter.must[0]: only key conditions (match, range) and nested filters are supported"),
        (
            {"is_empty": {"key": "class"}},
            "filter.must[0]: only key conditions (match, range) and nested filters are supported",
        ),
    ],
)
def test_a_condition_that_does_not_fit_its_column_is_refused_at_its_place(
    condition: dict[str, Any], message: str
) -> None:
    assert refused({"must": [condition]}) == message


def test_the_place_follows_the_clause_position_and_nesting() -> None:
    good = cond("class", match={"value": "Bag"})
    bad = cond("colour", match={"value": "red"})
    assert refused({"should": [good, bad]}).startswith("filter.should[1].key: unknown column")
    assert refused({"must_not": [good, {"must": [good, bad]}]}).startswith("filter.must_not[1].must[1].key:")
    assert refused({"min_should": {"conditions": [good, bad], "min_count": 1}}).startswith(
        "filter.min_should.conditions[1].key: unknown column"
    )


def test_json_that_is_no_filter_names_the_place_the_user_wrote() -> None:
    assert refused({"mustt": []}) == "filter.mustt: Extra inputs are not permitted"
    assert refused({"must": [cond("class", match={"valu": "a"})]}) == "filter.must[0].match.value: Field required"
    assert refused({"must": [cond("label", range={"gte": "x"})]}) == (
        "filter.must[0].range.gte: Input should be a valid number, unable to parse string as a number"
    )
    assert refused({"should": [{"must": [cond("label", range={"lt": "y"})]}]}).startswith(
        "filter.should[0].must[0].range.lt: Input should be a valid number"
    )


def nested(levels: int) -> dict[str, Any]:
    inner: dict[str, Any] = {"must": [cond("class", match={"value": "Bag"})]}
    for _ in range(levels):
        inner = {"must": [inner]}
    return inner


def test_filters_nest_at_most_max_depth_levels() -> None:
    assert MAX_DEPTH == 3
    assert parse_filter(nested(MAX_DEPTH), FIELDS) is not None
    assert (
        refused(nested(MAX_DEPTH + 1)) == "filter.must[0].must[0].must[0].must[0]: filters nest at most 3 levels deep"
    )


def test_at_most_max_conditions_nested_ones_counted_nested_filters_not() -> None:
    one = cond("label", match={"value": 1})
    assert MAX_CONDITIONS == 32
    assert parse_filter({"must": [one] * 16, "should": [{"must": [one] * 16}]}, FIELDS) is not None
    assert refused({"must": [one] * 16, "should": [{"must": [one] * 17}]}) == "filter: at most 32 conditions"
    assert refused({"must": [one] * 33}) == "filter: at most 32 conditions"
    # The count is checked before the 33rd condition's own rules: an unknown column there is not named.
    assert refused({"must": [*[one] * 32, cond("colour", match={"value": "x"})]}) == "filter: at most 32 conditions"
