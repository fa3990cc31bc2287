"""kfp v2 components, one per pipeline step: thin adapters over the pipeline entries of ``visearch.stages``.

Each module holds the plain step function; :func:`build` turns them into lightweight Python
components on the train image (``Dockerfile.train``), so the image is chosen in one place
(``Settings.train_image``) and nothing happens at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components.embed import embed
from components.evaluate import evaluate
from components.preprocess import preprocess
from components.refresh import refresh
from components.shards import shards
from components.train import train
from components.upsert import upsert

STEPS: tuple[Callable[..., Any], ...] = (refresh, preprocess, train, evaluate, shards, embed, upsert)


@dataclass(frozen=True)
class Components:
    """The step components (the mode's decision, five steps and the embed step's fan-out), built for one image."""

    refresh: Any
    preprocess: Any
    train: Any
    evaluate: Any
    shards: Any
    embed: Any
    upsert: Any


def component(func: Callable[..., Any], image: str) -> Any:
    """A lightweight Python component on ``image``.

    ``install_kfp_package=False``: the train image ships kfp (the ``pipeline`` extra), so a step
    never pip-installs at run time (offline clusters; and kfp.local would reinstall kfp into the
    running environment otherwise).
    """
    return dsl.component(func, base_image=image, install_kfp_package=False)


def build(image: str) -> Components:
    """The step components with ``base_image=image``."""
    return Components(*(component(step, image) for step in STEPS))
