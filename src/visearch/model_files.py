"""A saved model's files, its ``meta.json`` spec and its object-store keys: what needs no torch.

``visearch.model`` re-exports all of it. It lives apart because a pipeline step is a fresh
process: the upsert step publishes and prunes model files and the embed step names its scratch
folder by the model's version, and importing torch for that costs a step seconds (README
"Performance").
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from visearch.errors import NotFoundError
from visearch.normalize import LITE_NORMALIZE

# The files of a saved model: what load_model reads, and the exported graph query time prefers.
WEIGHT_FILES = ("trunk.pth", "embedder.pth", "meta.json")
ONNX_FILE = "model.onnx"
MODEL_FILES = (*WEIGHT_FILES, ONNX_FILE)


@dataclass
class ModelSpec:
    """What meta.json records: enough to rebuild the network and preprocess its input."""

    trunk_model: str = "efficientnet-lite0"
    embedder_layers: list[int] = field(default_factory=lambda: [512, 128])
    input_size: int = 96
    trunk_dim: int = 0
    normalize: tuple[tuple[float, ...], tuple[float, ...]] = LITE_NORMALIZE
    version: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding: the last embedder layer, or the trunk's output without one."""
        return self.embedder_layers[-1] if self.embedder_layers else self.trunk_dim


def store_key(category: str, version: str, name: str = "") -> str:
    """Where a model version's files live in the object store: ``models/<category>/<version>/<name>``."""
    return f"models/{category}/{version}/{name}" if name else f"models/{category}/{version}"


def model_files(directory: Path) -> list[Path]:
    """The model's files present in ``directory`` (weights, meta.json, model.onnx; not checkpoints)."""
    return [directory / name for name in MODEL_FILES if (directory / name).is_file()]


def copy_model(source: Path, destination: Path) -> Path:
    """The model files of ``source`` into ``destination`` (a no-op for files that are already there)."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in model_files(source):
        if path.resolve() != (destination / path.name).resolve():
            shutil.copyfile(path, destination / path.name)
    return destination


def read_spec(directory: Path) -> ModelSpec:
    """The model's spec from ``meta.json`` in ``directory``; NotFoundError if there is none."""
    try:
        raw = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFoundError(f"no model in {directory} (meta.json missing)") from exc
    raw["normalize"] = tuple(tuple(values) for values in raw["normalize"])
    return ModelSpec(**raw)
