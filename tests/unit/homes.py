"""A test home seen by the unit tests: its search engine, and a fingerprint of every file in it."""

from __future__ import annotations

from typing import Any

from visearch.categories import load_registry
from visearch.settings import Settings


def search_engine(settings: Settings, **options: Any) -> Any:
    """A SearchEngine on the home's registry, local object store and index (close it after use)."""
    from visearch.index import open_index
    from visearch.search import SearchEngine
    from visearch.storage import LocalStore

    registry = load_registry(settings.visearch_categories)
    return SearchEngine(settings, registry, LocalStore(settings.objects_dir), open_index(settings), **options)


def home_digest(settings: Settings) -> dict[str, str]:
    """Every file under the data home (relative path → SHA-256): what a step that must write nothing leaves alone."""
    import hashlib

    return {
        path.relative_to(settings.home).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(settings.home.rglob("*"))
        if path.is_file()
    }
