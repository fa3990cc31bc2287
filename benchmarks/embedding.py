"""Embedding throughput: the embed step (decode + preprocess + forward) vs the bare batched forward.

    python benchmarks/embedding.py [--images 512] [--input-size 64] [--batch-sizes 32,64,128] [--workers 0,1,2]

The baseline is the model's forward on pre-decoded, pre-transformed tensors in the same process:
the ratio says how much of the model's speed the full step keeps (target >= 0.9x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import table, write_result  # noqa: E402

from visearch.data.dataset import ImageFiles  # noqa: E402
from visearch.data.demo import demo_source  # noqa: E402
from visearch.data.transforms import eval_transform  # noqa: E402
from visearch.embed import embed_paths  # noqa: E402
from visearch.model import create_model  # noqa: E402


def bare_forward(model: torch.nn.Module, tensors: torch.Tensor, batch_size: int) -> float:
    """Images per second of the forward pass alone."""
    started = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(tensors), batch_size):
            model(tensors[lo : lo + batch_size])
    return len(tensors) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()

    paths = sorted((demo_source() / "images").rglob("*.png"))[: args.images]
    model = create_model("efficientnet-lite0", [512, 128], args.input_size).eval()
    transform = eval_transform(args.input_size, model.spec.normalize)
    dataset = ImageFiles(paths, [0] * len(paths), transform)
    tensors = torch.stack([dataset[i][0] for i in range(len(dataset))])
    embed_paths(model, paths[:64], show_progress=False)  # warm-up (allocator, kernels)

    rows = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        bare = bare_forward(model, tensors, batch_size)
        for workers in map(int, args.workers.split(",")):
            started = time.perf_counter()
            embed_paths(model, paths, batch_size=batch_size, workers=workers, show_progress=False)
            step = len(paths) / (time.perf_counter() - started)
            rows.append([batch_size, workers, f"{bare:.1f}", f"{step:.1f}", f"{step / bare:.2f}x"])
            print(rows[-1], flush=True)
    write_result(
        "embedding",
        "Embedding throughput (images/s)",
        f"{len(paths)} Fashion-MNIST PNGs, EfficientNet-Lite0 + [512,128] embedder, input {args.input_size} px, "
        f"torch threads {torch.get_num_threads()}",
        table(["batch", "DataLoader workers", "bare forward img/s", "embed step img/s", "step / bare"], rows),
    )


if __name__ == "__main__":
    main()
