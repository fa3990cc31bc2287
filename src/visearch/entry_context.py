"""The objects every entry point builds once: settings, the category registry and the object store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visearch.categories import Category, Registry, load_registry
from visearch.settings import Settings
from visearch.storage import ObjectStore, make_store

if TYPE_CHECKING:
    from visearch.tracking import Tracker


@dataclass
class Context:
    """Settings, registry and store, built at an entry point (CLI command, pipeline step) and passed down."""

    settings: Settings
    registry: Registry
    store: ObjectStore

    @classmethod
    def from_env(cls) -> Context:
        """Build the context from the environment: settings, the registry they name and their store."""
        settings = Settings()
        return cls(settings, load_registry(settings.visearch_categories), make_store(settings))

    def category(self, name: str) -> Category:
        """The registry's category called ``name`` (UnknownCategoryError if there is none)."""
        return self.registry.get(name)

    def for_stage(self, category: str) -> tuple[Settings, ObjectStore, Category]:
        """What every stage function takes first: the settings, the store and the category's registry entry."""
        return self.settings, self.store, self.category(category)

    def work(self, category: str, name: str, given: Path | None = None) -> Path:
        """A step's directory: the one given, else ``<home>/work/<category>/<name>``."""
        return given or self.settings.work_dir / category / name

    def tracker(self) -> Tracker:
        """An MLflow tracker for these settings."""
        from visearch.tracking import Tracker

        return Tracker.from_settings(self.settings)
