"""The UI's facet choices on the indexed demo category: counted over the images the other filter
controls leave, a column's own selection never narrowing itself, chosen values always kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS, need_module
from tests.unit.homes import search_engine
from visearch.search import SearchEngine
from visearch.settings import Settings

ALL = len(TINY_CLASSES) * TINY_PER_CLASS


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    need_module("gradio", "gradio is not installed (the serve extra)")
    engine = search_engine(indexed_home)
    yield engine
    engine.close()


def space_counts(engine: SearchEngine, values: dict[str, Any], column: str) -> dict[str, int]:
    """``column``'s value counts over the search space that ``values``' filter leaves (a search, not a facet)."""
    from ui.filters import filter_json

    query = engine.decode(engine.image(TINY, engine.examples(TINY, 1)[0].id)[0], min_side=engine.query_side(TINY))
    flt = filter_json(engine.registry.get(TINY).filterable, values)
    results = engine.search(TINY, query, k=ALL, filter=flt).results
    return dict(Counter(r.cls if column == "class" else r.captions[column] for r in results))


def counts_of(choices: list[tuple[str, Any]]) -> dict[str, int]:
    """The ``value -> count`` a dropdown's ``("value (count)", value)`` choices show."""
    shown = {value: int(label.rsplit("(", 1)[1].rstrip(")")) for label, value in choices}
    assert [label for label, _ in choices] == [f"{value} ({count})" for value, count in shown.items()]
    return shown


def test_each_dropdown_counts_what_the_other_controls_leave(engine: SearchEngine) -> None:
    from ui.filters import narrowed_choices

    category = engine.registry.get(TINY)
    every_class = {cls: TINY_PER_CLASS for cls in TINY_CLASSES}
    # Nothing chosen: the whole category.
    plain = narrowed_choices(engine, category, {})
    assert set(plain) == {"article", "class"} and counts_of(plain["class"]) == every_class
    # Two classes, a label range and a text: each dropdown counts what the OTHER controls leave;
    # the class list is not narrowed by its own selection (another class can still be picked).
    values = {"class": ["Bag", "Dress"], "label": (3, None), "source": "t10k"}
    choices = narrowed_choices(engine, category, values)
    assert counts_of(choices["article"]) == space_counts(engine, values, "article") == {"Bag": 8, "Dress": 8}
    others = {**values, "class": []}
    assert counts_of(choices["class"]) == space_counts(engine, others, "class")
    assert counts_of(choices["class"]) == {"Dress": 8, "Sneaker": 8, "Bag": 8, "Ankle-boot": 8}
    # A value the other controls leave no image of stays offered, with a zero count; so does a
    # chosen value that the narrowed list would not hold.
    values = {"article": ["Trouser"], "class": ["Dress"]}
    choices = narrowed_choices(engine, category, values)
    assert choices["article"] == [("Dress (8)", "Dress"), ("Trouser (0)", "Trouser")]
    assert choices["class"] == [("Trouser (8)", "Trouser"), ("Dress (0)", "Dress")]


def test_a_chosen_value_past_the_cut_keeps_its_count(engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import ui.filters
    from ui.filters import narrowed_choices

    # One value fits in a list: of two chosen ones, one at least is past the cut; it is counted on
    # its own (over the other controls' filter), not shown as 0.
    monkeypatch.setattr(ui.filters, "MAX_CHOICES", 1)
    choices = narrowed_choices(engine, engine.registry.get(TINY), {"class": ["Trouser", "Bag"], "label": (None, 8)})
    shown = counts_of(choices["class"])
    assert set(shown) == {"Trouser", "Bag"} and shown["Trouser"] == shown["Bag"] == TINY_PER_CLASS, choices
    choices = narrowed_choices(engine, engine.registry.get(TINY), {"class": ["Trouser", "Bag"], "label": (2, 8)})
    assert counts_of(choices["class"])["Trouser"] == 0, choices
