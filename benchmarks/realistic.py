"""Vectors that look like embeddings: the demo model's embeddings of all of Fashion-MNIST, plus perturbed copies.

The demo category's model is trained with the library (its preprocess and train steps with the
registry's parameters on the bundled demo data, in a temporary home: the model the demo's gate
promotes), then every Fashion-MNIST image (60,000 train + 10,000 t10k, read
from Debian's ``dataset-fashion-mnist`` IDX files by visearch's adapter) is embedded with it on
ONNX Runtime. The model and the 70,000 vectors are cached in ``benchmarks/.cache/`` (gitignored),
so re-runs skip training and embedding.

Past 70,000 points the set grows with perturbed copies of real embeddings: Gaussian noise
scaled to a fraction of the typical nearest-neighbour distance of the real set, re-normalised,
so a copy lands among the real neighbours of its source rather than on top of it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
CACHE_FILE = CACHE / "fashion-mnist-70k-demo-model.npy"
MODEL_DIR = CACHE / "demo-model"
SPLITS = ("train", "t10k")


def _idx_images(source: Path, split: str) -> np.ndarray:
    from visearch.data.adapters.fashion_mnist import _read_idx

    return _read_idx(source / f"{split}-images-idx3-ubyte.gz")


def demo_model() -> Path:
    """The demo category's fine-tuned model, trained once with the library and cached."""
    if (MODEL_DIR / "meta.json").is_file():
        return MODEL_DIR
    from visearch.data.demo import demo_category, ensure_demo_data
    from visearch.entry_context import Context
    from visearch.model import copy_model
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import run_train

    previous_home = os.environ.get("VISEARCH_HOME")
    with tempfile.TemporaryDirectory(prefix="visearch-indexbench-") as folder:
        os.environ["VISEARCH_HOME"] = folder
        ctx = Context.from_env()
        ensure_demo_data(ctx.registry, ctx.store)
        category = demo_category(ctx.registry)
        work = Path(folder) / "work"
        run_preprocess(ctx.settings, ctx.store, category, work / "manifest", show_progress=False)
        trained = run_train(
            ctx.settings, ctx.store, work / "manifest", category.train, work / "train", show_progress=False
        )
        copy_model(trained.model_dir, MODEL_DIR)
    if previous_home is None:
        os.environ.pop("VISEARCH_HOME", None)
    else:
        os.environ["VISEARCH_HOME"] = previous_home
    return MODEL_DIR


def embed_fashion_mnist(batch_size: int = 256) -> np.ndarray:
    """The 70,000 L2-normalised embeddings (train split first), computed once and cached."""
    if CACHE_FILE.is_file():
        return np.load(CACHE_FILE)
    from PIL import Image

    from visearch.data.adapters.fashion_mnist import DEBIAN_SOURCE
    from visearch.inference import load_embedder, preprocess

    embedder = load_embedder(demo_model(), backend="onnx")
    pixels = np.concatenate([_idx_images(DEBIAN_SOURCE, split) for split in SPLITS])
    started = time.perf_counter()
    chunks = []
    for lo in range(0, len(pixels), batch_size):
        images = [Image.fromarray(p, mode="L").convert("RGB") for p in pixels[lo : lo + batch_size]]
        chunks.append(embedder.embed(preprocess(images, embedder.spec)))
        print(f"\rembedded {lo + len(images):,} images", end="", flush=True)
    print(f"\nembedded {len(pixels):,} images in {time.perf_counter() - started:.0f} s", flush=True)
    vectors = np.concatenate(chunks).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # the model normalises; guard float drift
    CACHE.mkdir(exist_ok=True)
    partial = CACHE_FILE.with_name(CACHE_FILE.name + ".part.npy")
    np.save(partial, vectors)
    partial.replace(CACHE_FILE)
    return vectors


def nearest_neighbour_distance(vectors: np.ndarray, rng: np.random.Generator, sample: int = 500) -> float:
    """Median Euclidean distance from a sample of rows to their nearest other row."""
    rows = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    similarities = vectors[rows] @ vectors.T
    similarities[np.arange(len(rows)), rows] = -np.inf  # not itself
    best = similarities.max(axis=1)
    return float(np.median(np.sqrt(np.maximum(0.0, 2 - 2 * best))))


def realistic(
    size: int, queries: int, rng: np.random.Generator, *, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray, str]:
    """``size`` data vectors and ``queries`` query vectors, disjoint, plus a one-line description.

    Queries are real embeddings held out of the data. The data is the other real embeddings
    (shuffled, cut to ``size``), topped up with copies of random real ones, each moved by
    Gaussian noise whose expected length is ``noise`` times the real set's median
    nearest-neighbour distance, then re-normalised.
    """
    real = embed_fashion_mnist()
    order = rng.permutation(len(real))
    query_vectors, base = real[order[:queries]], real[order[queries:]]
    nn = nearest_neighbour_distance(base, rng)
    sigma = noise * nn / np.sqrt(base.shape[1])  # E|noise| ~ sigma * sqrt(dim)
    parts = [base[:size]]
    missing = size - len(parts[0])
    for lo in range(0, max(missing, 0), 100_000):
        count = min(100_000, missing - lo)
        copies = base[rng.integers(0, len(base), count)] + rng.normal(scale=sigma, size=(count, base.shape[1]))
        parts.append((copies / np.linalg.norm(copies, axis=1, keepdims=True)).astype(np.float32))
    data = np.concatenate(parts)
    data = data[rng.permutation(len(data))]  # copies must not arrive in one block after the originals
    described = (
        f"{min(size, len(base)):,} real Fashion-MNIST embeddings of the demo model + {max(missing, 0):,} perturbed "
        f"copies (noise {noise} x median NN distance {nn:.3f}); queries: {queries} held-out real embeddings"
    )
    return data, query_vectors, described
