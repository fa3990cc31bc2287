"""Embed images in batches (progress bar), resumable shard by shard."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from visearch.errors import IndexIntegrityError, InvalidQueryError, NotFoundError

# torch is imported where vectors are computed: reading finished shards (the upsert step, a fresh
# process in the pipeline) needs only NumPy.
if TYPE_CHECKING:
    import torch

    from visearch.model import EmbeddingModel

SHARD_SIZE = 1024
# Fastest on 2 cores in benchmarks/results/embedding.md: batch 32 (0.82-0.86x the bare forward on the demo's PNGs).
BATCH_SIZE = 32
# DataLoader worker processes pay off only where decoding outweighs the forward pass. On 2 cores
# (benchmarks/results/embedding.md): 12-megapixel phone JPEGs (~1.2 MB, 17 ms to decode even at
# 1/8 scale against ~5 ms of forward) embed 1.2-1.3x faster with 2 workers, while the demo's 1 kB PNGs
# embed 0.8x as fast, the workers taking the forward's cores.
DECODE_BOUND_BYTES = 256 * 1024
MAX_LOADER_WORKERS = 4
# Workers hand their batches over in shared memory, two batches each in flight; Docker and
# Kubernetes give a container 64 MB of /dev/shm unless told otherwise, and a full one kills the
# workers with a bus error. Half of it: 4 workers at 96 px (3.5 MB a batch of 32), none at 224 px.
SHARED_MEMORY_BUDGET = 32 * 1024 * 1024
PREFETCHED_BATCHES = 2  # each worker's prefetch_factor, passed so the budget holds by construction


def loader_workers(paths: Sequence[Path], bytes_per_batch: int = 0, sample: int = 32) -> int:
    """DataLoader workers for embedding ``paths``: one per core (at most 4) for large files, else none.

    Judged on the median size of the first ``sample`` files; a file that cannot be read counts as
    empty (the embed step reports it when it gets there). ``bytes_per_batch``: one batch of input
    tensors (:func:`batch_bytes`); fewer workers (or none) where their batches would not fit ``SHARED_MEMORY_BUDGET``.
    """
    sizes = sorted(_file_size(path) for path in paths[:sample])
    if not sizes or sizes[len(sizes) // 2] < DECODE_BOUND_BYTES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    fit = SHARED_MEMORY_BUDGET // max(1, PREFETCHED_BATCHES * bytes_per_batch)
    return min(MAX_LOADER_WORKERS, cores, fit)


def batch_bytes(batch_size: int, input_size: int) -> int:
    """Bytes of one batch of input tensors (float32 RGB): what a worker holds in shared memory."""
    return batch_size * 3 * input_size**2 * 4


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: one contiguous range of the manifest's rows, embedded by one pod.

    The pipeline fans the embed step out over a category's shards and the upsert step collects
    them (README "Scale"); ``Shard(0, 1)`` is the whole category.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        """Refuse a shard outside ``0 <= index < count``."""
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidQueryError(f"shard {self.index}/{self.count}: need 0 <= i < n, e.g. 0/2 and 1/2")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` (0-based) → ``Shard(i, n)``.

        Raises:
            InvalidQueryError: the text is not ``i/n`` with ``0 <= i < n``.
        """
        index, _, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError as exc:
            raise InvalidQueryError(f"a shard is written i/n (0-based), e.g. 0/2; got {text!r}") from exc

    @classmethod
    def all_of(cls, count: int) -> list[Shard]:
        """The ``count`` shards that together cover a category."""
        return [cls(index, count) for index in range(count)]

    def rows(self, total: int) -> range:
        """This shard's rows of ``total``: shards differ in size by one row at most, and may be empty."""
        return range(self.index * total // self.count, (self.index + 1) * total // self.count)

    def __str__(self) -> str:
        """``"i/n"``, as :meth:`parse` reads it."""
        return f"{self.index}/{self.count}"


def embed_paths(
    model: EmbeddingModel,
    paths: list[Path],
    *,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    show_progress: bool = True,
    desc: str = "embedding",
    device: torch.device | None = None,
) -> np.ndarray:
    """L2-normalised embeddings (float32, one row per path) in the order given.

    On a CUDA ``device`` the forward runs in float16 autocast; vectors come back as float32 on the CPU.
    ``workers``: DataLoader processes decoding the images (None: :func:`loader_workers` judges by size).
    """
    import torch
    from torch.utils.data import DataLoader

    from visearch.data.dataset import ImageFiles
    from visearch.data.transforms import decode_side, eval_transform

    device = device or torch.device("cpu")
    model.eval()
    model.to(device)
    transform = eval_transform(model.spec.input_size, model.spec.normalize)
    # Decoded at the scale the model needs, as a query is: a phone photo costs a 1/8-scale decode.
    dataset = ImageFiles(paths, [0] * len(paths), transform, min_side=decode_side(model.spec.input_size))
    if workers is None:
        workers = loader_workers(paths, batch_bytes(batch_size, model.spec.input_size))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        prefetch_factor=PREFETCHED_BATCHES if workers else None,  # DataLoader refuses one without workers
        pin_memory=device.type == "cuda",
    )
    chunks = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        desc += f" ({workers} decoding processes)" if workers else ""
        for images, _ in tqdm(loader, desc=desc, unit="batch", disable=not show_progress):
            chunks.append(model(images.to(device, non_blocking=True)).float().cpu().numpy())
    if not chunks:
        return np.zeros((0, model.spec.embedding_dim), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def embed_to_shards(
    model: EmbeddingModel,
    keys: list[str],
    paths: list[Path],
    out_dir: Path,
    *,
    batch_size: int = BATCH_SIZE,
    shard_size: int = SHARD_SIZE,
    show_progress: bool = True,
    device: torch.device | None = None,
    marker: Mapping[str, Any] | None = None,
    workers: int | None = None,
    on_part: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``part-NNNNN.npz`` shards (keys + vectors) then ``done.json``; finished shards are kept on re-run.

    ``marker``: more fields for ``done.json`` (which shard of the category these keys are).
    ``workers``: DataLoader processes decoding the images (None: :func:`loader_workers` judges by size).
    ``on_part``: called with each part as it is finished (the embed stage keeps a copy off the pod).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / "done.json"
    # The marker names the model and exactly which keys: a marker left by other data never passes.
    keys_hash = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    expected = {"model_version": model.spec.version, "count": len(keys), "keys": keys_hash, **(marker or {})}
    if done.exists():
        if json.loads(done.read_text()) == expected:
            return out_dir
        done.unlink()  # stale: until this run finishes, the folder holds no finished embeddings
    n_shards = (len(keys) + shard_size - 1) // shard_size
    for shard in range(n_shards):
        path = out_dir / f"part-{shard:05d}.npz"
        lo, hi = shard * shard_size, min(len(keys), (shard + 1) * shard_size)
        if path.exists():
            with np.load(path) as existing:
                if existing["keys"].tolist() == keys[lo:hi] and str(existing["model"]) == model.spec.version:
                    continue
        vectors = embed_paths(
            model,
            paths[lo:hi],
            device=device,
            batch_size=batch_size,
            workers=workers,
            show_progress=show_progress,
            desc=f"embedding shard {shard + 1}/{n_shards}",
        )
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys[lo:hi]), vectors=vectors, model=np.array(model.spec.version))
        tmp.replace(path)
        if on_part:
            on_part(path)
    for stale in out_dir.glob("part-*.npz"):  # left by an earlier run with another shard size
        if not stale.name.endswith(".tmp.npz") and int(stale.stem.split("-")[1]) >= n_shards:
            stale.unlink()
    done.write_text(json.dumps(expected))
    return out_dir


def read_shards(out_dir: Path) -> tuple[list[str], np.ndarray, str]:
    """All keys and vectors of a finished embedding directory, with the model version."""
    done = out_dir / "done.json"
    if not done.is_file():
        raise NotFoundError(f"{out_dir} has no finished embeddings (done.json missing); re-run embed")
    info = json.loads(done.read_text())
    keys: list[str] = []
    vectors = []
    for path in sorted(out_dir.glob("part-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path) as shard:
            keys += shard["keys"].tolist()
            vectors.append(shard["vectors"])
    if len(keys) != info["count"]:
        raise NotFoundError(f"{out_dir}: {len(keys)} embeddings but {info['count']} expected; re-run embed")
    # An empty shard (more shards than images) holds no part: no dimension to give its empty array.
    return keys, np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32), str(info["model_version"])


def read_embeddings(dirs: Path | Sequence[Path]) -> tuple[list[str], np.ndarray, str]:
    """The keys and vectors of one finished embedding directory, or of all shards of one category.

    The shards may come in any order; they are joined in shard order, so the keys come back in the
    manifest's order (the upsert compares them with the manifest).

    Raises:
        NotFoundError: a directory holds no finished embeddings.
        IndexIntegrityError: shards missing, given twice, of different splits or of different models.
    """
    dirs = [dirs] if isinstance(dirs, Path) else list(dirs)
    shards: dict[Shard, Path] = {}
    for path in dirs:
        done = path / "done.json"
        if not done.is_file():
            raise NotFoundError(f"{path} has no finished embeddings (done.json missing); re-run embed")
        shard = Shard.parse(str(json.loads(done.read_text()).get("shard", "0/1")))  # unsharded: the whole category
        if shard in shards:
            raise IndexIntegrityError(f"shard {shard} given twice ({shards[shard]}, {path}); re-run embed")
        shards[shard] = path
    counts = {shard.count for shard in shards}
    if len(counts) != 1 or len(shards) != next(iter(counts)):
        found = ", ".join(sorted(map(str, shards)))
        raise IndexIntegrityError(f"embedding shards {found} do not make one whole category; re-run embed")
    parts = [read_shards(shards[shard]) for shard in sorted(shards, key=lambda s: s.index)]
    versions = {version for _, _, version in parts}
    if len(versions) != 1:
        raise IndexIntegrityError(f"embedding shards made by different models {sorted(versions)}; re-run embed")
    keys = [key for part_keys, _, _ in parts for key in part_keys]
    vectors = np.concatenate([part for _, part, _ in parts if len(part)]) if keys else np.zeros((0, 0), np.float32)
    return keys, vectors, versions.pop()


def trunk_embedder(
    trunk_model: str = "efficientnet-lite0", input_size: int = 96, *, show_progress: bool = True
) -> Callable[[list[Path]], np.ndarray]:
    """``paths -> vectors`` with the frozen pretrained trunk (shipped weights, no download)."""

    def embed(paths: list[Path]) -> np.ndarray:
        from visearch.model import create_model

        model = create_model(trunk_model, [], input_size)
        return embed_paths(model, paths, show_progress=show_progress, desc="embedding for duplicates")

    return embed
