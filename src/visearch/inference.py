"""Query-time inference: a saved model as an ``Embedder`` on ONNX Runtime (default) or torch eager.

On 2 CPU cores ONNX Runtime embeds EfficientNet-Lite0 at 32–96 px 10–30× faster than torch eager,
with outputs equal to 1e-6 (the unit tests check 1e-4). A model directory without ``model.onnx``
(the frozen baseline) is exported once into a cache; ``backend="torch"`` keeps the eager path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image

from visearch.model import ONNX_FILE, EmbeddingModel, ModelSpec, export_onnx, load_model
from visearch.query_input import input_batch

Backend = Literal["onnx", "torch"]
DEFAULT_BACKEND: Backend = "onnx"


class Embedder(Protocol):
    """A loaded model: preprocessing spec + batch embedding (N×3×S×S float32 → N×D, L2-normalised)."""

    spec: ModelSpec

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed batch (N×3×H×W float32) into L2-normalised vectors (N×D)."""
        ...


class TorchEmbedder:
    """Eager torch inference (the reference the ONNX path is checked against)."""

    def __init__(self, model: EmbeddingModel, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        self.spec = model.spec

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed batch with the torch model, without autograd."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).cpu().numpy()


class OnnxEmbedder:
    """ONNX Runtime inference of the exported model (dynamic batch axis)."""

    def __init__(self, path: Path, spec: ModelSpec, *, threads: int | None = None, gpu: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Pool threads that spin between forwards burn a core an idle server does not have: a query's
        # index lookup right after its forward ran 3x slower beside them (benchmarks/results/load.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # CUDA when asked and this onnxruntime build has it (onnxruntime-gpu); the CPU otherwise.
        providers = ["CPUExecutionProvider"]
        if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.spec = spec

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed batch with the ONNX Runtime session."""
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


def load_embedder(
    directory: Path,
    *,
    backend: Backend = DEFAULT_BACKEND,
    onnx_cache: Path | None = None,
    device: torch.device | None = None,
    threads: int | None = None,
) -> Embedder:
    """The model in ``directory`` on ``backend`` and ``device``; exports ``model.onnx`` to ``onnx_cache`` if missing.

    ``threads``: intra-op threads of one ONNX forward (unset: ONNX Runtime's default, every core).
    """
    model = load_model(directory)
    gpu = device is not None and device.type == "cuda"
    if backend == "torch":
        return TorchEmbedder(model, device)
    onnx_path = directory / ONNX_FILE
    if not onnx_path.is_file():
        onnx_path = (onnx_cache or directory) / ONNX_FILE
        if not onnx_path.is_file():
            onnx_path.parent.mkdir(parents=True, exist_ok=True)
            partial = onnx_path.with_name(f"{ONNX_FILE}.part")
            export_onnx(model, partial)
            partial.replace(onnx_path)  # atomic: a half-written file is never loaded
    return OnnxEmbedder(onnx_path, model.spec, threads=threads, gpu=gpu)


def preprocess(images: Sequence[Image.Image], spec: ModelSpec) -> np.ndarray:
    """The evaluation transform of the model (in numpy: :mod:`visearch.query_input`) as one float32 batch."""
    return input_batch(images, spec.input_size, spec.normalize)
