"""Training throughput per device: visearch's training step vs a bare PyTorch loop of the same model.

    python benchmarks/train.py [--images 256] [--input-size 64] [--batch-size 32] [--steps 12] [--devices cpu,cuda]

Both train the same trunk + embedder with the same loss, miner, batch size and images on the same
device; the baseline decodes and transforms every image once up front and feeds tensors from memory,
so the ratio (ours / bare) says how much of the device's speed visearch's step keeps (sampler,
decoding, augmentation, mixed precision and checkpoints included). A `cuda` row is measured when
torch sees a GPU (VISEARCH_DEVICE=cuda), and skipped otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from common import table, write_result  # noqa: E402

from visearch.categories import TrainParams  # noqa: E402
from visearch.data.dataset import ImageFiles  # noqa: E402
from visearch.data.demo import demo_source  # noqa: E402
from visearch.data.transforms import train_transform  # noqa: E402
from visearch.model import create_model  # noqa: E402
from visearch.train import freeze_batchnorm, loss_and_miner, train  # noqa: E402


def bare_loop(rows: pd.DataFrame, paths: list[Path], params: TrainParams, steps: int, device: torch.device) -> float:
    """Images per second of forward + loss + backward + step on pre-transformed tensors."""
    model = create_model(params.trunk_model, params.embedder_layers, params.input_size).to(device)
    dataset = ImageFiles(paths, rows["label"].tolist(), train_transform(params.input_size, model.spec.normalize))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).to(device)
    labels = torch.tensor(rows["label"].tolist(), device=device)
    loss_fn, miner = loss_and_miner(params.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    model.train()
    freeze_batchnorm(model.trunk)  # as visearch trains
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, len(images), (params.batch_size,), device=device)
        embeddings = model(images[index])
        loss = loss_fn(embeddings, labels[index], miner(embeddings, labels[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * params.batch_size / (time.perf_counter() - started)


def ours(rows: pd.DataFrame, paths: list[Path], params: TrainParams, steps: int, device: torch.device) -> float:
    """Images per second of visearch's `train` (one epoch capped at ``steps`` batches), model creation included."""
    limited = params.model_copy(update={"epochs": 1, "max_steps": steps})
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = train(rows, paths, limited, Path(out), device=device, show_progress=False)
        elapsed = time.perf_counter() - started
    return steps * result.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--devices", default="cpu,cuda")
    args = parser.parse_args()

    source = demo_source()
    meta = pd.read_csv(source / "meta.csv", index_col=0).head(args.images).reset_index(drop=True)
    paths = [source / "images" / file for file in meta["file"]]
    params = TrainParams(input_size=args.input_size, batch_size=args.batch_size, sampler_m=4)
    rows = []
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda: no GPU visible to torch here; row skipped")
            continue
        device = torch.device(name)
        bare = bare_loop(meta, paths, params, args.steps, device)
        mine = ours(meta, paths, params, args.steps, device)
        rows.append([name, round(bare, 1), round(mine, 1), f"{mine / bare:.2f}x"])
        print(f"{name}: bare {bare:.1f} img/s, visearch {mine:.1f} img/s ({mine / bare:.2f}x)")
    body = table(["device", "bare PyTorch loop (img/s)", "visearch train (img/s)", "ratio"], rows)
    print(body)
    write_result(
        "train",
        "Training throughput per device",
        f"{args.images} demo images, {args.input_size} px, batch {args.batch_size}, {args.steps} steps, "
        "EfficientNet-Lite0 + [512, 128], multi-similarity loss + miner",
        body,
    )


if __name__ == "__main__":
    main()
