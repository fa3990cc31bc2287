"""Category registry: one YAML file is the single source of truth for the category list.

Adding a category = adding an entry to the YAML (no code change). The UI, pipeline, CLI and
service all read the same registry.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from visearch.errors import ConfigError, UnknownCategoryError

# Re-exported: the registry entry holds them (``Category.train``) and most callers read them from here.
from visearch.train_params import TrainParams as TrainParams
from visearch.train_params import parse_layers as parse_layers

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
# The kinds of filterable caption columns, each backed by an engine payload index of that type.
FieldKind = Literal["keyword", "integer", "float", "text"]
# Filterable on every category: the class name and its integer label (every point stores both).
CORE_FIELDS: dict[str, FieldKind] = {"class": "keyword", "label": "integer"}
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class StepResources(BaseModel):
    """What one pipeline step asks of a cluster node (Kubernetes quantities: "500m", "2", "4Gi")."""

    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


class RefreshPolicy(BaseModel):
    """When a category's changes call for training rather than a refresh (``visearch refresh``)."""

    max_changed_share: float = Field(
        default=0.2, ge=0, le=1, description="Retrain when more than this share of the images changed since training"
    )
    retrain_on_new_class: bool = Field(
        default=True, description="Retrain when an image of a class never trained on arrived"
    )


class Category(BaseModel):
    """One searchable category: its texts for the UI, where its data lives, how to train it."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str
    business_usage: str = ""
    credits: str = ""
    data_dir: str = Field(default="", description="Object-store prefix of images + meta CSV")
    meta: str = "meta.csv"
    train: TrainParams = Field(default_factory=TrainParams)
    resources: dict[str, StepResources] = Field(
        default_factory=dict, description="Per-step requests/limits on a cluster (preprocess, train, ...)"
    )
    embed_shards: int = Field(
        default=1, ge=1, le=256, description='Embed pods the pipeline fans out over (README "Scale"); 1 = one pod'
    )
    demo: bool = False
    fields: dict[str, FieldKind] = Field(
        default_factory=dict,
        description="Filterable caption columns and their kinds (besides the always filterable class and label)",
    )
    captions: list[str] = Field(
        default_factory=list, description="Caption columns that text search covers ([] = no caption text)"
    )
    meaning: list[str] | None = Field(
        default=None,
        description=(
            "Caption columns whose meaning is embedded for text search (default: every caption column; "
            "[] = exact words only). Leave out identifier-like columns: each distinct value costs a "
            "sentence-model pass when the index is built"
        ),
    )
    duplicate_threshold: float = Field(
        default=0.97, gt=0, le=1, description="Cosine similarity above which two images count as near-duplicates"
    )
    refresh: RefreshPolicy = Field(default_factory=RefreshPolicy)

    @field_validator("fields")
    @classmethod
    def _plain_columns(cls, value: dict[str, FieldKind]) -> dict[str, FieldKind]:
        for column in value:
            if column in CORE_FIELDS:
                raise ValueError(f"{column!r} is always filterable; do not declare it")
            if not re.match(COLUMN_PATTERN, column):
                raise ValueError(f"column {column!r} must be letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _meaning_within_captions(self) -> Category:
        unknown = [column for column in self.meaning or [] if column not in self.captions]
        if unknown:
            raise ValueError(f"meaning: {', '.join(map(repr, unknown))} not among the captions {self.captions}")
        return self

    @property
    def filterable(self) -> dict[str, FieldKind]:
        """Every filterable column and its kind: ``class``, ``label`` and the declared ``fields``, sorted."""
        return dict(sorted({**CORE_FIELDS, **self.fields}.items()))

    @field_validator("data_dir")
    @classmethod
    def _no_traversal(cls, value: str) -> str:
        if ".." in Path(value).parts:
            raise ValueError("data_dir must not contain '..'")
        return value

    @property
    def data_prefix(self) -> str:
        """Object-store prefix of the category's images and meta CSV (default ``datasets/<name>``)."""
        return (self.data_dir or f"datasets/{self.name}").strip("/")


class Registry(BaseModel):
    """The categories visearch knows, as read from the registry YAML."""

    categories: list[Category]

    def names(self) -> list[str]:
        """The category names, in registry order."""
        return [category.name for category in self.categories]

    def get(self, name: str) -> Category:
        """The category called ``name``.

        Raises:
            UnknownCategoryError: the registry has no such category.
        """
        for category in self.categories:
            if category.name == name:
                return category
        raise UnknownCategoryError(f"unknown category {name!r}; known: {', '.join(self.names())}")


def default_registry_path() -> Path:
    """The registry shipped with the package (``visearch/categories.yaml``)."""
    return Path(str(resources.files("visearch") / "categories.yaml"))


def load_registry(path: Path | None = None) -> Registry:
    """Read and validate the registry YAML (the shipped one when ``path`` is None)."""
    path = path or default_registry_path()
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"category registry not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"category registry {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list):
        raise ConfigError(f"category registry {path} must have a top-level 'categories' list")
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"category registry {path}: {where}: {first['msg']}") from exc
    names = registry.names()
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"category registry {path}: duplicate names {duplicates}")
    return registry
