"""The search filter: Qdrant's own filter JSON, validated against a category's declared columns.

One JSON object, exactly Qdrant's filter (``must`` / ``should`` / ``must_not`` lists, ``min_should``)::

    {"must": [{"key": "article", "match": {"value": "Ankle boot"}},
              {"key": "label", "range": {"gte": 5, "lt": 9}}],
     "must_not": [{"key": "class", "match": {"any": ["Bag", "Dress"]}}],
     "should": [{"key": "source", "match": {"text": "t10k"}},
                {"must": [...]}]}                      # a nested filter is a condition too

Conditions: ``match.value`` (keyword or integer column), ``match.any`` / ``match.except`` (a list
of such values), ``match.text`` (a ``text`` column: all its words, case-insensitive), ``range``
with ``gte``/``gt``/``lte``/``lt`` numbers (integer or float column). qdrant-client's pydantic
model parses the JSON (no parser of ours); :func:`parse_filter` then checks every condition
against the category's columns and the size limits, naming the offending place
(``filter.must[0].key: unknown column 'colour'; filterable: article, class, label, source``).
Each backend runs the checked :class:`qdrant_client.models.Filter` (edge translates it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError
from qdrant_client import models

from visearch.errors import InvalidQueryError

MAX_DEPTH = 3  # nested filters inside the top-level one
MAX_CONDITIONS = 32  # field conditions in one filter, nested ones included
CLAUSES = ("must", "should", "must_not")
# Union members of qdrant-client's models that a location passes through but a user never wrote.
_NOT_OURS = ("DatetimeRange", "GeoBoundingBox", "GeoRadius", "GeoPolygon", "ValuesCount", "Nested", "HasVector")


def parse_filter(raw: Mapping[str, Any] | None, fields: Mapping[str, str]) -> models.Filter | None:
    """The checked filter for a category whose filterable columns are ``fields`` (column -> kind).

    Args:
        raw: the filter JSON (a dict), or None / ``{}`` for no filter.
        fields: filterable column -> ``keyword`` | ``integer`` | ``float`` | ``text``.

    Returns:
        The parsed filter, or None when ``raw`` is empty.

    Raises:
        InvalidQueryError: not a filter, an unknown column, a condition that does not fit the
            column's kind, or more than MAX_CONDITIONS conditions / MAX_DEPTH nesting levels.
    """
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return None
    if not isinstance(raw, Mapping):
        raise InvalidQueryError(f"filter must be a JSON object, got {type(raw).__name__}")
    try:
        parsed = models.Filter.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidQueryError(_explain(exc)) from exc
    count = 0
    for where, condition, depth in _walk(parsed, "filter", 0):
        if isinstance(condition, models.Filter):
            if depth >= MAX_DEPTH:  # this one would be nesting level depth + 1
                raise InvalidQueryError(f"{where}: filters nest at most {MAX_DEPTH} levels deep")
            continue
        count += 1
        if count > MAX_CONDITIONS:
            raise InvalidQueryError(f"filter: at most {MAX_CONDITIONS} conditions")
        _check_condition(where, condition, fields)
    return parsed


def clauses(flt: models.Filter) -> Iterator[tuple[str, list[Any]]]:
    """The filter's non-empty ``must`` / ``should`` / ``must_not`` clauses, each as a list."""
    for name in CLAUSES:
        value = getattr(flt, name)
        if value is not None:
            yield name, value if isinstance(value, list) else [value]


def _walk(flt: models.Filter, where: str, depth: int) -> Iterator[tuple[str, Any, int]]:
    items = list(clauses(flt))
    if flt.min_should is not None:
        items.append(("min_should.conditions", list(flt.min_should.conditions)))
    for name, conditions in items:
        for position, condition in enumerate(conditions):
            place = f"{where}.{name}[{position}]"
            yield place, condition, depth
            if isinstance(condition, models.Filter):
                yield from _walk(condition, place, depth + 1)


def _check_condition(where: str, condition: Any, fields: Mapping[str, str]) -> None:
    if not isinstance(condition, models.FieldCondition):
        raise InvalidQueryError(f"{where}: only key conditions (match, range) and nested filters are supported")
    key = condition.key
    if key not in fields:
        raise InvalidQueryError(f"{where}.key: unknown column {key!r}; filterable: {', '.join(sorted(fields))}")
    kind = fields[key]
    match, bounds = condition.match, condition.range
    others = condition.model_dump(exclude={"key", "match", "range"}, exclude_none=True)
    if others or (match is None) == (bounds is None):
        raise InvalidQueryError(f"{where}: a condition on {key!r} takes exactly one of match or range")
    if bounds is not None:
        if kind not in ("integer", "float") or not isinstance(bounds, models.Range):
            raise InvalidQueryError(f"{where}.range: column {key!r} is {kind}; range needs an integer or float column")
        if all(getattr(bounds, side) is None for side in ("gte", "gt", "lte", "lt")):
            raise InvalidQueryError(f"{where}.range: give at least one of gte, gt, lte, lt")
        return
    if isinstance(match, models.MatchText):
        if kind != "text":
            raise InvalidQueryError(f"{where}.match.text: column {key!r} is {kind}; text match needs a text column")
        return
    if isinstance(match, models.MatchValue):
        values, part = [match.value], "value"
    elif isinstance(match, models.MatchAny):
        values, part = list(match.any), "any"
    elif isinstance(match, models.MatchExcept):
        values, part = list(match.except_), "except"
    else:
        raise InvalidQueryError(f"{where}.match: use value, any, except or text")
    wanted = {"keyword": str, "integer": int}.get(kind)
    if wanted is None:
        hint = "use match.text" if kind == "text" else "use range"
        raise InvalidQueryError(f"{where}.match.{part}: column {key!r} is {kind}; {hint}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise InvalidQueryError(f"{where}.match.{part}: column {key!r} is {kind}; {value!r} is not")


def _explain(exc: ValidationError) -> str:
    """One line for the most telling of pydantic's errors, at the place the user wrote."""
    errors = exc.errors()
    ours = [e for e in errors if not any(str(part) in _NOT_OURS for part in e["loc"])] or errors
    best = max(ours, key=lambda e: len(e["loc"]))
    where = "filter"
    for part in best["loc"]:
        text = str(part)
        if isinstance(part, int):
            where += f"[{part}]"
        elif text.startswith(("`", "list[", "union[")) or text[:1].isupper():
            continue  # pydantic's names for union members, not keys of the JSON
        else:
            where += f".{text}"
    return f"{where}: {best['msg']}"
