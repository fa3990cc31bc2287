"""The category registry: one source of truth, a category is a YAML entry, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from visearch.categories import TrainParams, load_registry
from visearch.errors import ConfigError, UnknownCategoryError

SEED_CATEGORIES = {"shoes", "dogs", "celebrities", "logos", "fashion", "fashion-mnist"}


def test_shipped_registry_has_the_seed_categories_and_the_demo() -> None:
    registry = load_registry()
    assert set(registry.names()) >= SEED_CATEGORIES
    demo = [c for c in registry.categories if c.demo]
    assert [c.name for c in demo] == ["fashion-mnist"]
    for category in registry.categories:
        assert category.title and category.business_usage and category.credits
        assert category.data_prefix == f"datasets/{category.name}"


def test_adding_a_category_is_a_yaml_entry(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("categories:\n  - name: cars\n    title: Cars\n    train: {epochs: 7, lr: 0.001}\n")
    category = load_registry(path).get("cars")
    assert category.train.epochs == 7 and category.train.lr == 0.001
    assert category.train.batch_size == 32  # the defaults fill the rest


def test_the_full_fashion_mnist_is_the_demos_entry_with_its_own_training() -> None:
    registry = load_registry()
    demo, full = registry.get("fashion-mnist"), registry.get("fashion-mnist-full")
    assert not full.demo and full.data_prefix == "datasets/fashion-mnist-full"
    # The YAML merge keeps the demo's columns, texts and training, and changes only what was measured.
    assert (full.fields, full.captions, full.business_usage) == (demo.fields, demo.captions, demo.business_usage)
    assert full.duplicate_threshold == demo.duplicate_threshold
    changed = {key for key, value in full.train.model_dump().items() if value != getattr(demo.train, key)}
    assert changed == {"train_images_per_class", "trunk_lr_scale"}
    assert full.train.train_images_per_class == 100 and demo.train.train_images_per_class is None


def test_zero_lifts_a_registry_budget() -> None:
    budgeted = TrainParams(train_images_per_class=100, eval_images_per_class=200)
    # None keeps the registry's value (an option not given); 0 asks for every image.
    assert budgeted.with_overrides({"train_images_per_class": None}).train_images_per_class == 100
    lifted = budgeted.with_overrides({"train_images_per_class": 0, "eval_images_per_class": 0})
    assert lifted.train_images_per_class is None and lifted.eval_images_per_class is None
    with pytest.raises(ConfigError, match="train_images_per_class"):
        budgeted.with_overrides({"train_images_per_class": 1})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("categories: [", "not valid YAML"),
        ("cats: []", "top-level 'categories' list"),
        ("categories:\n  - {name: a, title: A}\n  - {name: a, title: B}\n", "duplicate names"),
        ("categories:\n  - {name: 'Bad Name', title: A}\n", "categories.0.name"),
        ("categories:\n  - {name: a, title: A, train: {epochs: -1}}\n", "train.epochs"),
        ("categories:\n  - {name: a, title: A, data_dir: ../../etc}\n", "data_dir"),
        ("categories:\n  - {name: a, title: A, captions: [brand], meaning: [brnd]}\n", "meaning: 'brnd' not among"),
    ],
)
def test_bad_registries_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_registry(path)


def test_missing_registry_and_unknown_category() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_registry(Path("/nonexistent/registry.yaml"))
    with pytest.raises(UnknownCategoryError, match="unknown category 'cars'; known: "):
        load_registry().get("cars")
