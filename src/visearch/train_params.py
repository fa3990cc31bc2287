"""Training parameters, declared once: the model the registry, the CLI and the pipeline all derive from.

``TrainParams`` holds each parameter with its default, its bounds and its description. The command
line (``visearch train``, ``visearch pipeline run``) and the Kubeflow pipeline's run parameters are
generated from it by ``run_parameters()``: a field added here becomes a CLI option and a run
parameter with no other change (``tests/unit/test_train_params.py`` holds that).
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from visearch.errors import ConfigError


class TrainParams(BaseModel):
    """Training parameters (the seed's names) with their defaults."""

    trunk_model: str = Field(default="efficientnet-lite0", description="efficientnet-lite0 or a torchvision name")
    trunk_weights: str | None = Field(default=None, description="Local weights file for a torchvision trunk")
    embedder_layers: list[int] = Field(default=[512, 128], description="MLP widths; [] = frozen-trunk features")
    split: float = Field(default=0.6, gt=0, lt=1, description="Fraction of CLASSES used for training")
    holdout: float = Field(default=0.2, ge=0, lt=1, description="Fraction of a train class's images held out")
    batch_size: int = Field(default=32, ge=2, description="Images per training batch")
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
    weight_decay: float = Field(default=1e-4, ge=0, description="Adam weight decay")
    sampler_m: int = Field(default=4, ge=1, description="Images per class in a batch (MPerClassSampler)")
    input_size: int = Field(default=96, ge=16, le=1024, description="Side of the square model input, pixels")
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
    seed: int = Field(default=0, ge=0, description="Seed of the class split, the sampler and the weights' init")
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

        Fields that are no text on the model (``embedder_layers``, ``accelerator``) may be given as the text a
        command line or a pipeline parameter carries (``"512,128"``, ``"nvidia.com/gpu=1"``; see ``from_text``).

        Raises:
            ConfigError: an override names no parameter or has a value the parameter refuses.
        """
        values = self.model_dump()
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in values:
                raise ConfigError(f"unknown training parameter {key!r}")
            values[key] = from_text(key, value) if isinstance(value, str) else value
        try:
            return TrainParams.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"invalid training parameter {first['loc'][0]}: {first['msg']}") from exc


def parse_layers(text: str) -> list[int]:
    """``"512,128"`` → ``[512, 128]``; an empty text (or ``none``) is no embedder (frozen-trunk features)."""
    if text.strip().lower() == "none":
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"embedder_layers takes comma-separated integers, got {text!r}") from exc


def parse_accelerator(text: str) -> dict[str, int] | None:
    """``"nvidia.com/gpu=1"`` → ``{"nvidia.com/gpu": 1}``; ``none`` → no accelerator."""
    if text.strip().lower() in {"", "none"}:
        return None
    kind, _, count = text.partition("=")
    try:
        return {kind.strip(): int(count or 1)}
    except ValueError as exc:
        raise ConfigError(f"accelerator takes RESOURCE=COUNT, e.g. nvidia.com/gpu=1, got {text!r}") from exc


# Fields whose value is no text on the model: how a command line or run parameter spells them.
TEXT_FORMS = {"embedder_layers": parse_layers, "accelerator": parse_accelerator}


def from_text(name: str, value: str) -> Any:
    """A parameter's value from the text a command line or pipeline parameter carries."""
    parse = TEXT_FORMS.get(name)
    return parse(value) if parse else value


@dataclass(frozen=True)
class RunParameter:
    """One training parameter as a command-line option and a pipeline run parameter carry it.

    A pipeline parameter cannot be None, so ``unset`` (-1, -1.0 or "") stands for "keep the
    category's registry value"; a command-line option is None when not given.
    """

    name: str
    kind: type  # str, int or float: the type of the option and of the run parameter
    unset: Any
    help: str

    @property
    def option(self) -> str:
        """The command-line flag: ``--trunk-model``."""
        return "--" + self.name.replace("_", "-")


UNSET = {int: -1, float: -1.0, str: ""}


def _kind(annotation: Any) -> type:
    """str, int or float: what carries a field of this annotation (lists and dicts travel as text)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))  # noqa: S307 - the model's own annotations, postponed
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    return annotation if annotation in (int, float) else str


def run_parameters() -> list[RunParameter]:
    """Every ``TrainParams`` field as an option / run parameter, in declaration order."""
    found = []
    for name, field in TrainParams.model_fields.items():
        kind = _kind(field.annotation)
        described = field.description or name.replace("_", " ")
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        found.append(RunParameter(name, kind, UNSET[kind], f"{described} (built-in: {shown})"))
    return found
