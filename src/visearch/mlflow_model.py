"""A saved model as an MLflow pyfunc: image bytes in, L2-normalised embedding vectors out.

What the gate registers as ``visearch-<category>``, so ``mlflow.pyfunc.load_model(
"models:/visearch-<category>@champion")`` embeds images exactly as the service does: the same
decode (``decode_image``), preprocessing (``preprocess``) and ONNX Runtime session
(``load_embedder``). The model's files (trunk.pth, embedder.pth, meta.json, model.onnx) are the
pyfunc's artifacts, under ``artifacts/`` in the MLflow model folder.

Input: a pandas DataFrame with one column ``image`` (MLflow type ``binary``): the encoded image
file (PNG, JPEG, ...) as ``bytes``. A ``str`` value is read as base64, which is how binary columns
travel in JSON (``mlflow models serve``, the serving input example). Output: a float32 array N×D,
one L2-normalised row per input row.

MLflow is imported here at module level: callers import this module only when they register a
model (the gate) or load one.
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from PIL import Image

from visearch.data.images import decode_image
from visearch.data.transforms import decode_side
from visearch.inference import Embedder, load_embedder, preprocess
from visearch.model import MODEL_FILES, ONNX_FILE, copy_model, export_onnx, load_model, read_spec

IMAGE_COLUMN = "image"
# Rows embedded per forward pass: bounds memory for a large DataFrame.
BATCH = 64
# What the loaded model needs besides visearch itself (pinned to what saved it, for `mlflow models`).
REQUIREMENTS = (
    "mlflow",
    "onnxruntime",
    "torch",
    "torchvision",
    "efficientnet-lite-pytorch",
    "pillow",
    "numpy",
    "pandas",
)


def image_bytes(value: Any) -> bytes:
    """A cell of the ``image`` column as bytes: raw bytes, or base64 text (JSON transport)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise TypeError(f"column {IMAGE_COLUMN!r} takes image bytes or base64 text, got {type(value).__name__}")


class VisearchEmbedder(PythonModel):
    """The pyfunc: decodes each image, preprocesses it for the model, embeds on ONNX Runtime."""

    def load_context(self, context: Any) -> None:
        """Open the model's ONNX graph from the artifacts MLflow unpacked."""
        self.embedder = self._open(Path(context.artifacts["meta.json"]).parent)

    @staticmethod
    def _open(directory: Path) -> Embedder:
        return load_embedder(directory, backend="onnx")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """One L2-normalised vector per row of the ``image`` column."""
        return embed_frame(self.embedder, model_input)


def embed_frame(embedder: Embedder, frame: pd.DataFrame) -> np.ndarray:
    """N×D vectors of the images in ``frame[IMAGE_COLUMN]``, in row order."""
    if IMAGE_COLUMN not in frame.columns:
        raise ValueError(f"input needs a column {IMAGE_COLUMN!r} of image bytes; got {list(frame.columns)}")
    values = frame[IMAGE_COLUMN].tolist()
    parts = [np.zeros((0, embedder.spec.embedding_dim), dtype=np.float32)]
    side = decode_side(embedder.spec.input_size)  # decoded at the scale the model needs, not full size
    for lo in range(0, len(values), BATCH):
        images = [decode_image(image_bytes(value), min_side=side) for value in values[lo : lo + BATCH]]
        parts.append(embedder.embed(preprocess(images, embedder.spec)).astype(np.float32, copy=False))
    return np.concatenate(parts)


def example_image() -> bytes:
    """A small PNG (a grey gradient): the logged input example, made here so nothing is read from data."""
    ramp = np.linspace(0, 255, 48, dtype=np.uint8)
    pixels = np.stack([np.add.outer(ramp, ramp[::-1]) // 2] * 3, axis=-1)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def requirements() -> list[str]:
    """Pinned requirements of the loaded model: visearch and what it runs on."""
    pins = []
    for name in ("visearch", *REQUIREMENTS):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def save_pyfunc(model_dir: Path, destination: Path) -> Path:
    """The model in ``model_dir`` as an MLflow pyfunc folder at ``destination`` (signature, input example).

    ``model.onnx`` is exported first when the folder lacks it (the frozen baseline of an in-process
    run), so the registered model always carries the graph the service runs.
    """
    with tempfile.TemporaryDirectory(prefix="visearch-pyfunc-") as scratch:
        files = copy_model(model_dir, Path(scratch) / "files")
        if not (files / ONNX_FILE).is_file():
            export_onnx(load_model(files), files / ONNX_FILE)
        example = pd.DataFrame({IMAGE_COLUMN: [example_image()]})
        output = embed_frame(VisearchEmbedder._open(files), example)
        mlflow.pyfunc.save_model(
            path=str(destination),
            python_model=VisearchEmbedder(),
            artifacts={name: str(files / name) for name in MODEL_FILES},
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=requirements(),
            metadata={"visearch.model_version": read_spec(files).version, "input_column": IMAGE_COLUMN},
        )
    return destination
