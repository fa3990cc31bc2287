"""`visearch browse` as a user runs it: a table and the next offset, JSON pages, filters, one-line errors."""

from __future__ import annotations

import json
import re

from tests.helpers import PLAIN, TINY, TINY_CLASSES, TINY_PER_CLASS
from tests.unit.cli.runs import assert_one_line_error, visearch
from visearch.settings import Settings

ALL = len(TINY_CLASSES) * TINY_PER_CLASS
BOOTS = '{"must": [{"key": "article", "match": {"value": "Ankle boot"}}]}'


def test_browse_prints_a_table_and_the_next_offset_until_the_end(indexed_home: Settings) -> None:
    first = visearch(indexed_home, "browse", "-c", TINY, "--limit", "30")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split()[:4] == ["#", "class", "label", "file"] and lines[-1] == "more: --offset 30"
    rows = lines[1:-1]
    assert len(rows) == 30 and rows[0].split()[0] == "1" and rows[0].split()[1] in TINY_CLASSES
    rest = visearch(indexed_home, "browse", "-c", TINY, "--offset", "30", "--limit", "30")
    assert rest.stdout.splitlines()[-1] == "end of the category"
    assert len(rest.stdout.splitlines()) == 1 + ALL - 30 + 1 and rest.stdout.splitlines()[1].split()[0] == "31"
    files = {row.split()[3] for row in rows} | {row.split()[3] for row in rest.stdout.splitlines()[1:-1]}
    assert len(files) == ALL  # the two pages hold every image once


def test_browse_json_with_a_filter(indexed_home: Settings) -> None:
    result = visearch(indexed_home, "browse", "--category", TINY, "--filter", BOOTS, "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert page["category"] == TINY and page["offset"] == 0 and page["next_offset"] == 5
    assert [set(item) for item in page["items"]] == [{"id", "class", "label", "file", "captions"}] * 5
    assert {item["captions"]["article"] for item in page["items"]} == {"Ankle boot"}
    last = json.loads(visearch(indexed_home, "browse", "-c", TINY, "--filter", BOOTS, "--offset", "5", "--json").stdout)
    assert len(last["items"]) == TINY_PER_CLASS - 5 and last["next_offset"] is None


def test_browse_errors_are_one_line(indexed_home: Settings) -> None:
    assert_one_line_error(visearch(indexed_home, "browse", "-c", "nope"), "unknown category 'nope'")
    assert_one_line_error(visearch(indexed_home, "browse", "-c", TINY, "--limit", "0"), "limit must be an integer")
    assert_one_line_error(visearch(indexed_home, "browse", "-c", TINY, "--filter", "{x"), "--filter is not JSON")
    assert_one_line_error(
        visearch(
            indexed_home, "browse", "-c", TINY, "--filter", '{"must": [{"key": "colour", "match": {"value": 1}}]}'
        ),
        "unknown column 'colour'",
    )
    assert_one_line_error(visearch(indexed_home, "browse", "-c", PLAIN), "has no index yet")
    assert re.search(r"--offset", visearch(indexed_home, "browse", "--help").stdout)
