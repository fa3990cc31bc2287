"""Category registry: one YAML file is the single source of truth for the category list.

Adding a category = adding an entry to the YAML (no code change). The UI, pipeline, CLI and
service all read the same registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from visearch.errors import ConfigError, UnknownCategoryError

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
# The kinds of filterable caption columns, each backed by an engine payload index of that type.
FieldKind = Literal["keyword", "integer", "float", "text"]
# Filterable on every category: the class name and its integer label (every point stores both).
CORE_FIELDS: dict[str, FieldKind] = {"class": "keyword", "label": "integer"}
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class TrainParams(BaseModel):
    """Training parameters (the seed's names) with their defaults."""

    trunk_model: str = Field(default="efficientnet-lite0", description="efficientnet-lite0 or a torchvision name")
    trunk_weights: str | None = Field(default=None, description="Local weights file for a torchvision trunk")
    embedder_layers: list[int] = Field(default=[512, 128], description="MLP widths; [] = frozen-trunk features")
    split: float = Field(default=0.6, gt=0, lt=1, description="Fraction of CLASSES used for training")
    holdout: float = Field(default=0.2, ge=0, lt=1, description="Fraction of a train class's images held out")
    batch_size: int = Field(default=32, ge=2)
    epochs: int = Field(default=3, ge=0, description="Most epochs; with validation data, early stopping may end sooner")
    patience: int = Field(
        default=2, ge=0, description="Stop after this many epochs without a better validation MAP@R (0: never early)"
    )
    validation: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Fraction of a train class's images, and of the held-out classes, kept for validation",
    )
    lr: float = Field(
        default=1e-3, gt=0, description="Embedder lr (tuned on the demo: 1e-3 beat 1e-4 and the seed recipe)"
    )
    trunk_lr_scale: float = Field(default=0.1, ge=0, description="Trunk lr = lr * this (0 freezes the trunk)")
    weight_decay: float = Field(default=1e-4, ge=0)
    sampler_m: int = Field(default=4, ge=1, description="Images per class in a batch (MPerClassSampler)")
    input_size: int = Field(default=96, ge=16, le=1024)
    loss: str = Field(default="multi_similarity", description="multi_similarity | circle | triplet")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps (smoke runs)")
    train_images_per_class: int | None = Field(
        default=None,
        ge=2,
        description="Training budget: train on at most this many images per class, sampled (None or 0: all); "
        "every image is still evaluated, embedded and indexed",
    )
    eval_images_per_class: int | None = Field(
        default=1000,
        ge=2,
        description="Evaluation budget: the gate scores every model on at most this many sampled images per "
        "class, the same sample for all (None or 0: every image); evaluate embeds its images once per model",
    )
    seed: int = 0
    accelerator: dict[str, int] | None = Field(
        default=None,
        description="Accelerator the compiled pipeline requests for train, evaluate and embed, e.g. {nvidia.com/gpu: 1}",
    )

    @field_validator("train_images_per_class", "eval_images_per_class", mode="before")
    @classmethod
    def _zero_is_every_image(cls, value: Any) -> Any:
        # A command line or pipeline parameter lifts a registry budget with 0: None there keeps it.
        return None if value == 0 else value

    def identity(self) -> str:
        """Short hash of what shapes the trained weights (not how long: a longer run continues a shorter one)."""
        # patience, like epochs, only says when to stop: every epoch runs the same whatever its value,
        # so a run with more patience (or more epochs) continues one that stopped early. The
        # evaluation budget only says which images score the model.
        skip = {"epochs", "patience", "max_steps", "accelerator", "eval_images_per_class"}
        if self.train_images_per_class is None:
            skip.add("train_images_per_class")  # no budget: the identity runs before the budget existed had
        text = json.dumps(self.model_dump(exclude=skip), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_overrides(self, overrides: Mapping[str, Any] | None = None) -> TrainParams:
        """These parameters with ``overrides`` applied (``None`` values keep the current value).

        ``embedder_layers`` may be given as text, ``"512,128"`` (command lines, pipeline parameters).

        Raises:
            ConfigError: an override names no parameter or has a value the parameter refuses.
        """
        values = self.model_dump()
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in values:
                raise ConfigError(f"unknown training parameter {key!r}")
            values[key] = parse_layers(value) if key == "embedder_layers" and isinstance(value, str) else value
        try:
            return TrainParams.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"invalid training parameter {first['loc'][0]}: {first['msg']}") from exc


def parse_layers(text: str) -> list[int]:
    """``"512,128"`` → ``[512, 128]``; an empty text is no embedder (frozen-trunk features)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"embedder_layers takes comma-separated integers, got {text!r}") from exc


class StepResources(BaseModel):
    """What one pipeline step asks of a cluster node (Kubernetes quantities: "500m", "2", "4Gi")."""

    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


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
    duplicate_threshold: float = Field(
        default=0.97, gt=0, le=1, description="Cosine similarity above which two images count as near-duplicates"
    )

    @field_validator("fields")
    @classmethod
    def _plain_columns(cls, value: dict[str, FieldKind]) -> dict[str, FieldKind]:
        for column in value:
            if column in CORE_FIELDS:
                raise ValueError(f"{column!r} is always filterable; do not declare it")
            if not re.match(COLUMN_PATTERN, column):
                raise ValueError(f"column {column!r} must be letters, digits and underscores")
        return value

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
