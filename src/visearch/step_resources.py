"""What the compiled pipeline asks of a cluster: per-step resources, an accelerator, retries.

Defaults below, measured on the demo category and Fashion-MNIST (CPU): preprocess and upsert are
light, train and embed hold a model and a batch of images. A category's registry entry overrides
any of them (``resources: {train: {memory: 8Gi}}``) and may ask for an accelerator
(``train.accelerator: {nvidia.com/gpu: 1}``). One compiled pipeline serves the categories it was
compiled for, so each step gets the largest request among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from visearch.categories import Category, StepResources
from visearch.errors import ConfigError

STEPS = ("refresh", "preprocess", "train", "evaluate", "shards", "embed", "upsert")
DEFAULT_RESOURCES = {
    # The run's mode per category; a refresh embeds only the changed images (catalogue writes).
    "refresh": StepResources(cpu="1", memory="2Gi", memory_limit="4Gi"),
    "preprocess": StepResources(cpu="500m", memory="1Gi", memory_limit="2Gi"),
    "train": StepResources(cpu="2", memory="4Gi", memory_limit="8Gi"),
    "evaluate": StepResources(cpu="2", memory="3Gi", memory_limit="6Gi"),
    # Reads the registry and lists the embed step's shards (README "Scale").
    "shards": StepResources(cpu="100m", memory="256Mi", memory_limit="512Mi"),
    "embed": StepResources(cpu="2", memory="3Gi", memory_limit="6Gi"),
    "upsert": StepResources(cpu="500m", memory="1Gi", memory_limit="2Gi"),
}
# The steps that run the model: the ones an accelerator helps.
ACCELERATED_STEPS = ("train", "evaluate", "embed")
# A step that fails is retried (an engine restarting, a node drained); bad data fails every try.
RETRIES = 2
RETRY_BACKOFF = "30s"

_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str) -> float:
    """A Kubernetes quantity as a number ("500m" -> 0.5, "4Gi" -> 4294967296)."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text.strip())
    if not match or match.group(2) not in _UNITS:
        raise ConfigError(f"not a Kubernetes quantity: {text!r} (e.g. 500m, 2, 512Mi, 4Gi)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _largest(values: Iterable[str | None]) -> str | None:
    given = [value for value in values if value]
    return max(given, key=quantity) if given else None


@dataclass(frozen=True)
class ClusterPlan:
    """Per-step resources and the accelerator (type, count) for a set of categories."""

    resources: dict[str, StepResources]
    accelerator: tuple[str, int] | None


def cluster_plan(categories: Iterable[Category]) -> ClusterPlan:
    """The largest request of each step among ``categories`` (defaults where none says), and an accelerator if any asks."""
    chosen = list(categories)
    resources = {}
    for step in STEPS:
        options = [DEFAULT_RESOURCES[step], *(c.resources[step] for c in chosen if step in c.resources)]
        resources[step] = StepResources(
            **{field: _largest(getattr(o, field) for o in options) for field in StepResources.model_fields}
        )
    asked = [(kind, count) for c in chosen for kind, count in (c.train.accelerator or {}).items()]
    kinds = {kind for kind, _ in asked}
    if len(kinds) > 1:
        raise ConfigError(f"the categories ask for different accelerators {sorted(kinds)}: compile a pipeline per kind")
    accelerator = (asked[0][0], max(count for _, count in asked)) if asked else None
    return ClusterPlan(resources, accelerator)
