"""Embedding throughput: the embed step (decode + preprocess + forward) vs the bare batched forward.

    python benchmarks/embedding.py [--images 512] [--input-size 64] [--batch-sizes 32,64,128]
                                   [--workers 0,1,2,auto] [--photos 192] [--photo-input-size 96]

The baseline is the model's forward on pre-decoded, pre-transformed tensors in the same process:
the ratio says how much of the model's speed the full step keeps (target >= 0.9x). A second table
does the same for 12-megapixel phone JPEGs (tests/helpers.py ``phone_photo``), decoded at the scale
the model needs (JPEG draft) and, for comparison, at full size (the step before the change).
``auto`` is the step's default: DataLoader workers chosen by the images' size (visearch.embed.loader_workers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: the phone photo

import torch  # noqa: E402
from common import table, write_result  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from tests.helpers import PHONE_SIZE, phone_photo  # noqa: E402
from visearch.data.dataset import ImageFiles  # noqa: E402
from visearch.data.demo import demo_source  # noqa: E402
from visearch.data.transforms import decode_side, eval_transform  # noqa: E402
from visearch.embed import batch_bytes, embed_paths, loader_workers  # noqa: E402
from visearch.model import create_model  # noqa: E402


def bare_forward(model: torch.nn.Module, tensors: torch.Tensor, batch_size: int) -> float:
    """Images per second of the forward pass alone."""
    started = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(tensors), batch_size):
            model(tensors[lo : lo + batch_size])
    return len(tensors) / (time.perf_counter() - started)


def full_decode_step(model: torch.nn.Module, paths: list[Path], input_size: int, batch_size: int) -> float:
    """Images per second of the embed step as it was: every image decoded at full size."""
    transform = eval_transform(input_size, model.spec.normalize)
    loader = DataLoader(ImageFiles(paths, [0] * len(paths), transform), batch_size=batch_size)
    started = time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            model(images)
    return len(paths) / (time.perf_counter() - started)


def parse_workers(text: str) -> list[int | None]:
    """``"0,2,auto"`` → ``[0, 2, None]`` (None: the step's choice by image size)."""
    return [None if part == "auto" else int(part) for part in text.split(",")]


def workers_label(workers: int | None, paths: list[Path], batch_size: int, input_size: int) -> str:
    """A worker count as the table shows it: ``2``, or ``auto (2)`` for the step's own choice."""
    return f"auto ({loader_workers(paths, batch_bytes(batch_size, input_size))})" if workers is None else str(workers)


def photo_rows(count: int, input_size: int, batch_size: int, workers: list[int | None]) -> list[list[object]]:
    """The large-photo rows: bare forward, the step (scaled decode) per worker count, the full decode."""
    model = create_model("efficientnet-lite0", [512, 128], input_size).eval()
    transform = eval_transform(input_size, model.spec.normalize)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(count):
            path = Path(folder) / f"photo-{index:04d}.jpg"
            path.write_bytes(phone_photo(quality=78 + index % 5))  # ~1.1-1.3 MB each, like a phone's
            paths.append(path)
        scaled = ImageFiles(paths, [0] * count, transform, min_side=decode_side(input_size))
        tensors = torch.stack([scaled[i][0] for i in range(count)])
        # CPU ms per image (this process, all threads) beside the rates: on a shared machine the wall
        # times of a multi-threaded forward inflate far more than those of a one-thread decode.
        cpu = time.process_time()
        bare = bare_forward(model, tensors, batch_size)
        bare_cpu = (time.process_time() - cpu) * 1000 / count
        embed_paths(model, paths[:batch_size], show_progress=False)  # warm-up
        rows: list[list[object]] = []
        for worker_count in workers:
            started, cpu = time.perf_counter(), time.process_time()
            embed_paths(model, paths, batch_size=batch_size, workers=worker_count, show_progress=False)
            step = count / (time.perf_counter() - started)
            label = workers_label(worker_count, paths, batch_size, input_size)
            in_step = label in ("0", "auto (0)")
            step_cpu = f"{(time.process_time() - cpu) * 1000 / count:.1f}" if in_step else "(in workers)"
            rows.append(
                ["scaled (draft)", batch_size, label, f"{bare:.1f}", f"{step:.1f}", f"{step / bare:.2f}x"]
                + [f"{bare_cpu:.1f}", step_cpu]
            )
            print(rows[-1], flush=True)
        cpu = time.process_time()
        full = full_decode_step(model, paths, input_size, batch_size)
        full_cpu = (time.process_time() - cpu) * 1000 / count
        rows.append(
            ["full size (before)", batch_size, 0, f"{bare:.1f}", f"{full:.1f}", f"{full / bare:.2f}x"]
            + [f"{bare_cpu:.1f}", f"{full_cpu:.1f}"]
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--workers", default="0,1,2,auto", help="DataLoader workers per row (auto: the step's choice)")
    parser.add_argument("--result", default="embedding", help="results file name (benchmarks/results/NAME.md)")
    parser.add_argument(
        "--photos", type=int, default=192, help="12-megapixel JPEGs for the large-photo table (0: none)"
    )
    parser.add_argument("--photo-input-size", type=int, default=96, help="input size of the photo categories")
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
        for workers in parse_workers(args.workers):
            started = time.perf_counter()
            embed_paths(model, paths, batch_size=batch_size, workers=workers, show_progress=False)
            step = len(paths) / (time.perf_counter() - started)
            label = workers_label(workers, paths, batch_size, args.input_size)
            rows.append([batch_size, label, f"{bare:.1f}", f"{step:.1f}", f"{step / bare:.2f}x"])
            print(rows[-1], flush=True)
    body = table(["batch", "DataLoader workers", "bare forward img/s", "embed step img/s", "step / bare"], rows)
    parameters = (
        f"{len(paths)} Fashion-MNIST PNGs, EfficientNet-Lite0 + [512,128] embedder, input {args.input_size} px, "
        f"torch threads {torch.get_num_threads()}"
    )
    if args.photos:
        photos = photo_rows(args.photos, args.photo_input_size, 32, parse_workers(args.workers))
        body += (
            f"\n\nLarge photos: {args.photos} phone JPEGs of {PHONE_SIZE[0]}x{PHONE_SIZE[1]} (~1.2 MB, EXIF "
            f"orientation 6), input {args.photo_input_size} px, batch 32.\n\n"
        )
        body += table(
            [
                "decode",
                "batch",
                "DataLoader workers",
                "bare forward img/s",
                "embed step img/s",
                "step / bare",
                "bare CPU ms/img",
                "step CPU ms/img",
            ],
            photos,
        )
    write_result(args.result, "Embedding throughput (images/s)", parameters, body)


if __name__ == "__main__":
    main()
