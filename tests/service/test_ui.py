"""The Gradio UI the service mounts, built in this process (no server): the registry's categories, and
bad uploads and a broken registry shown as messages. In headless Chromium: tests/browser/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import need_module
from visearch.errors import InvalidImageError
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
        assert "Tiny test category" in labels and "Find similar images" in labels
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
