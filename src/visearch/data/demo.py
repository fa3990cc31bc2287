"""The bundled demo data: 1,000 Fashion-MNIST images shipped inside the package, and their ingestion."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from visearch.categories import Category, Registry
from visearch.data.ingest import ingest_folder
from visearch.errors import ConfigError
from visearch.storage import ObjectStore


def demo_source() -> Path:
    """The shipped demo dataset (``meta.csv`` + ``images/``) inside the installed package."""
    return Path(str(resources.files("visearch") / "demo_data" / "fashion-mnist"))


def demo_category(registry: Registry) -> Category:
    """The registry's category marked ``demo: true``."""
    category = next((c for c in registry.categories if c.demo), None)
    if category is None:
        raise ConfigError("the registry has no category marked demo: true")
    return category


def ensure_demo_data(registry: Registry, store: ObjectStore, *, force: bool = False) -> str:
    """Copy the demo dataset into the demo category's data location unless it is there; says what it did."""
    category = demo_category(registry)
    if not force and store.exists(f"{category.data_prefix}/{category.meta}"):
        return f"demo data already in place for {category.name}"
    return ingest_folder(store, category, demo_source()).summary()
