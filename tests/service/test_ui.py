"""The Gradio UI the service mounts, built in this process (no server): the registry's categories, and
bad uploads and a broken registry shown as messages. In headless Chromium: tests/browser/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY, TINY_CLASSES, need_module
from visearch.errors import InvalidImageError, InvalidQueryError
from visearch.runtime import Runtime
from visearch.settings import Settings


def test_ui_builds_from_the_registry_and_reports_bad_uploads(home: Settings, tmp_path: Path) -> None:
    gradio = need_module("gradio", "gradio is not installed (the serve extra)")
    from ui.app import build_ui, message_for, query_from_upload

    runtime = Runtime(home)
    try:
        blocks = build_ui(runtime)
        assert isinstance(blocks, gradio.Blocks)
        labels = [getattr(block, "value", None) for block in blocks.blocks.values()]
        assert "Find similar images" in labels
        # The category buttons render on page load from the live registry's rows (not indexed here).
        from ui.status import live_status

        rows = live_status(runtime, "live", "status", "chosen", None, None)["live"]
        assert ["tiny", "Tiny test category", False] in rows
        junk = tmp_path / "junk.png"
        junk.write_bytes(b"GIF89a but not really")
        with pytest.raises(InvalidImageError) as caught:
            query_from_upload(runtime, str(junk))
        assert "not a supported image" in message_for(caught.value)
    finally:
        runtime.close()


def test_ui_shows_a_broken_registry_instead_of_crashing(tmp_path: Path) -> None:
    gradio = need_module("gradio", "gradio is not installed (the serve extra)")
    from ui.app import build_ui

    bad = tmp_path / "categories.yaml"
    bad.write_text("categories: [", encoding="utf-8")
    settings = Settings(visearch_home=tmp_path / "home", visearch_categories=bad, _env_file=None)
    blocks = build_ui(Runtime(settings))
    texts = " ".join(str(getattr(block, "value", "")) for block in blocks.blocks.values())
    assert isinstance(blocks, gradio.Blocks) and "not valid YAML" in texts


def test_filter_controls_combine_into_the_library_filter() -> None:
    need_module("gradio", "gradio is not installed (the serve extra)")
    from ui.filters import filter_json

    kinds = {"article": "keyword", "class": "keyword", "label": "integer", "score": "float", "source": "text"}
    assert filter_json(kinds, {}) is None
    assert filter_json(kinds, {"class": [], "label": (None, None), "source": "  "}) is None
    assert filter_json(
        kinds,
        {"article": ["Bag"], "class": ["Bag", "Dress"], "label": (3.0, None), "score": (None, 0.5), "source": "t10k"},
    ) == {
        "must": [
            {"key": "article", "match": {"value": "Bag"}},
            {"key": "class", "match": {"any": ["Bag", "Dress"]}},
            {"key": "label", "range": {"gte": 3}},
            {"key": "score", "range": {"lte": 0.5}},
            {"key": "source", "match": {"text": "t10k"}},
        ]
    }


def test_ui_queries_filter_text_steer_and_page_on_the_real_index(indexed_home: Settings) -> None:
    need_module("gradio", "gradio is not installed (the serve extra)")
    from ui.filters import facet_choices, filter_json
    from ui.query import Example, Query, feedback_text, results_table

    runtime = Runtime(indexed_home)
    try:
        engine = runtime.engine()
        kinds = engine.registry.get(TINY).filterable
        # Facets feed the dropdowns: every class of the tiny category with its count.
        assert sorted(facet_choices(engine, TINY, "class")) == sorted((f"{c} (8)", c) for c in TINY_CLASSES)
        boot = next(r for r in engine.examples(TINY, 40) if r.cls == "Ankle-boot")
        image = engine.decode(engine.image(TINY, boot.id)[0], min_side=engine.query_side(TINY))

        # A filter: every row matches it; the table shows the calibrated similarity beside the raw one.
        only_bags = filter_json(kinds, {"class": ["Bag"]})
        answer = Query(TINY, image=image, filter=only_bags, k=5).run(engine)
        assert answer.results and {r.cls for r in answer.results} == {"Bag"}
        assert "| calibrated |" in results_table(answer) and all(r.calibrated is not None for r in answer.results)

        # Caption text alone: the images whose captions hold the word first (fused with the captions' meaning).
        texts = Query(TINY, text="boot", k=8).run(engine)
        assert texts.score_kind == "rrf" and texts.results
        assert all("boot" in str(r.captions.get("article", "")).lower() for r in texts.results)
        with pytest.raises(InvalidQueryError, match="input image or caption text"):
            Query(TINY, k=5).run(engine)

        # Paging: the second page follows the first, nothing repeats.
        first = Query(TINY, image=image, k=5).run(engine)
        second = Query(TINY, image=image, k=5, offset=first.next_offset or 0).run(engine)
        assert first.next_offset == 5 and not {r.id for r in first.results} & {r.id for r in second.results}

        # Less like this: disliking a result of another class pushes that class down the page.
        plain = Query(TINY, image=image, k=40).run(engine)
        other = next(r for r in plain.results if r.cls != "Ankle-boot")
        disliked = Query(TINY, image=image, k=40, dislikes=(Example.of(other),)).run(engine)
        assert disliked.score_kind == "recommend" and other.id not in {r.id for r in disliked.results}

        def mean_rank(results: list, cls: str) -> float:  # type: ignore[type-arg]
            ranks = [rank for rank, r in enumerate(results) if r.cls == cls]
            return sum(ranks) / len(ranks)

        assert mean_rank(disliked.results, other.cls) > mean_rank(plain.results, other.cls)
        # More like this: a liked result never comes back, its class rises.
        liked = Query(TINY, image=image, k=10, likes=(Example.of(other),)).run(engine)
        assert other.id not in {r.id for r in liked.results}
        assert sum(r.cls == other.cls for r in liked.results) > sum(r.cls == other.cls for r in first.results)
        assert "Less like:" in feedback_text((), (Example.of(other),))
        with pytest.raises(InvalidQueryError, match="less like this needs"):
            Query(TINY, text="boot", dislikes=(Example.of(other),)).run(engine)
    finally:
        runtime.close()
