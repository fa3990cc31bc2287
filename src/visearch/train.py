"""Fine-tune trunk + embedder with pytorch-metric-learning on the manifest's training classes."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning import losses, miners, samplers
from torch.utils.data import DataLoader
from tqdm import tqdm

from visearch.categories import TrainParams
from visearch.data.dataset import ImageFiles
from visearch.data.transforms import train_transform
from visearch.errors import DataError
from visearch.model import EmbeddingModel, create_model, save_model

log = logging.getLogger(__name__)
EpochCallback = Callable[[int, float], None]
Metrics = dict[str, dict[str, float]]
Validator = Callable[[EmbeddingModel], Metrics]
ValidationCallback = Callable[[int, Metrics], None]
CHECKPOINT_FILE = "checkpoint.pt"
SCORE_METRIC = "mean_average_precision_at_r"


@dataclass
class TrainResult:
    """What training produced: the saved model, its version, the loss per epoch and the batch size used.

    With validation: the metrics of every epoch, the epoch whose weights were kept (0-based) and
    whether patience ended training before ``epochs``.
    """

    model_dir: Path
    version: str
    epoch_losses: list[float] = field(default_factory=list)
    batch_size: int = 0
    validation: list[Metrics] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


def validation_score(metrics: Metrics) -> float | None:
    """The mean MAP@R over the validations that ran (in-domain, class-disjoint); None if none ran.

    Both count alike: the gate wants a model that gains in-domain without forgetting new classes.
    """
    scores = [result[SCORE_METRIC] for result in metrics.values() if SCORE_METRIC in result]
    return sum(scores) / len(scores) if scores else None


def loss_and_miner(name: str) -> tuple[torch.nn.Module, miners.BaseMiner]:
    """PML loss + miner pairs; the seed used CircleLoss with MultiSimilarityMiner."""
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(epsilon=0.1)
    if name == "circle":
        return losses.CircleLoss(m=0.4, gamma=80), miners.MultiSimilarityMiner(epsilon=0.1)
    if name == "triplet":
        return losses.TripletMarginLoss(margin=0.1), miners.TripletMarginMiner(margin=0.1, type_of_triplets="semihard")
    raise DataError(f"unknown loss {name!r} (multi_similarity, circle, triplet)")


def fit_sampler_m(m: int, labels: list[int]) -> int:
    """Images per class in a batch, never more than the smallest class has (two-image classes get m=2)."""
    return max(2, min(m, min(Counter(labels).values())))


def fit_batch_size(batch_size: int, m: int, n_classes: int) -> int:
    """MPerClassSampler needs batch % m == 0 and m * classes >= batch: shrink the batch to fit."""
    fitted = min(batch_size, m * n_classes)
    fitted -= fitted % m
    if fitted < 2:
        raise DataError(f"cannot form batches: m={m}, classes={n_classes}, batch_size={batch_size}")
    return fitted


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Keep pretrained BN statistics: small metric-learning batches would corrupt them."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.eval()


def save_checkpoint(path: Path, state: dict[str, object]) -> None:
    """Write then rename: a kill during the write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def frozen_model(params: TrainParams) -> EmbeddingModel:
    """The pretrained trunk alone (no embedder): the baseline, and a valid candidate model."""
    model = create_model(params.trunk_model, [], params.input_size, trunk_weights=params.trunk_weights)
    model.eval()
    return model


def train(
    train_rows: pd.DataFrame,
    image_paths: list[Path],
    params: TrainParams,
    out_dir: Path,
    *,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
    validate: Validator | None = None,
    on_validation: ValidationCallback | None = None,
    data_key: str = "",
    device: torch.device | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train on ``train_rows`` (images at ``image_paths``); writes the model to ``out_dir``.

    A checkpoint is written after every epoch (then ``on_checkpoint`` is called with its path, e.g. to
    copy it to the object store); a re-run with the same params and data (``data_key``) resumes from it.
    On a CUDA ``device`` the forward and loss run in mixed precision (float16 autocast, scaled gradients).

    With ``validate`` (the model → validation metrics, e.g. :func:`visearch.evaluate.validation_metrics`),
    every epoch is scored (:func:`validation_score`; ``on_validation`` gets the metrics), the best
    epoch's weights are the ones saved, and training stops once ``params.patience`` epochs in a row
    did not beat it (``epochs`` is then a ceiling). Without it, every epoch runs and the last one's
    weights are saved.
    """
    device = device or torch.device("cpu")
    mixed = device.type == "cuda"
    torch.manual_seed(params.seed)
    labels = train_rows["label"].astype(int).tolist()
    n_classes = len(set(labels))
    if n_classes < 2:
        raise DataError("training needs at least 2 classes")
    m = fit_sampler_m(params.sampler_m, labels)
    batch_size = fit_batch_size(params.batch_size, m, n_classes)
    if (m, batch_size) != (params.sampler_m, params.batch_size):
        log.warning(
            "sampler_m %d -> %d, batch_size %d -> %d: the smallest training class has %d images, %d classes",
            params.sampler_m,
            m,
            params.batch_size,
            batch_size,
            min(Counter(labels).values()),
            n_classes,
        )
    model = create_model(
        params.trunk_model, params.embedder_layers, params.input_size, trunk_weights=params.trunk_weights
    )
    model.to(device)
    dataset = ImageFiles(image_paths, labels, train_transform(params.input_size, model.spec.normalize))
    sampler = samplers.MPerClassSampler(labels, m=m, batch_size=batch_size, length_before_new_iter=len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)
    loss_fn, miner = loss_and_miner(params.loss)
    groups = [{"params": model.embedder.parameters(), "lr": params.lr}]
    if params.trunk_lr_scale > 0:
        groups.append({"params": model.trunk.parameters(), "lr": params.lr * params.trunk_lr_scale})
    else:
        model.trunk.requires_grad_(False)
    optimizer = torch.optim.Adam(groups, weight_decay=params.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=mixed)

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT_FILE
    # How long to train is not part of the run's identity: a longer re-run continues the shorter one.
    params_key = json.dumps({"params": params.identity(), "data": data_key}, sort_keys=True)
    start_epoch, epoch_losses = 0, []
    history: list[Metrics] = []
    best: dict[str, Any] | None = None  # epoch, score and weights of the best epoch so far
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("params") == params_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, epoch_losses = state["epoch"], state["losses"]
            history, best = state.get("validation", []), state.get("best")
            # The random streams too (sampler: NumPy; augmentation: torch): a resumed run draws the
            # batches and crops an uninterrupted one would, so it ends with the same weights.
            # PML's MPerClassSampler also shuffles its class order in place each epoch.
            if "rng" in state:
                torch.set_rng_state(state["rng"]["torch"].cpu())
                np.random.set_state(state["rng"]["numpy"])
                sampler.labels = list(state["rng"]["sampler_classes"])
            log.info("resuming training from epoch %d", start_epoch)

    step, stopped_early = 0, False
    for epoch in range(start_epoch, params.epochs):
        # Checked before the epoch, not after the last one: a resumed run with more patience continues.
        if best is not None and params.patience and epoch - 1 - best["epoch"] >= params.patience:
            log.info("early stop before epoch %d: no better validation since epoch %d", epoch + 1, best["epoch"] + 1)
            stopped_early = True
            break
        model.train()
        freeze_batchnorm(model.trunk)
        total, batches = 0.0, 0
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{params.epochs}", unit="batch", disable=not show_progress)
        for images, batch_labels in progress:
            images, batch_labels = images.to(device, non_blocking=True), batch_labels.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=mixed):
                embeddings = model(images)
            embeddings = embeddings.float()  # PML's losses and miners in full precision
            loss = loss_fn(embeddings, batch_labels, miner(embeddings, batch_labels))
            optimizer.zero_grad()
            scaler.scale(loss).backward()  # the scaler is a pass-through on the CPU
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach())
            batches += 1
            step += 1
            progress.set_postfix(loss=f"{total / batches:.4f}")
            if params.max_steps and step >= params.max_steps:
                break
        epoch_losses.append(total / max(batches, 1))
        if on_epoch:
            on_epoch(epoch, epoch_losses[-1])
        if validate:
            best = _validate(model, validate, epoch, history, best, on_validation)
        save_checkpoint(
            checkpoint,
            {
                "params": params_key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "losses": epoch_losses,
                "validation": history,
                "best": best,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "sampler_classes": list(sampler.labels),
                },
            },
        )
        if on_checkpoint:
            on_checkpoint(checkpoint)
        if params.max_steps and step >= params.max_steps:
            break
    if best is not None:
        model.load_state_dict(best["model"])
        log.info("keeping epoch %d of %d (validation MAP@R %.4f)", best["epoch"] + 1, len(epoch_losses), best["score"])
    model.eval()
    model.cpu()  # saved weights (and their version hash) never depend on the device
    model_dir = save_model(model, out_dir / "model")
    return TrainResult(
        model_dir,
        model.spec.version,
        epoch_losses,
        batch_size,
        validation=history,
        best_epoch=best["epoch"] if best is not None else None,
        stopped_early=stopped_early,
    )


def _validate(
    model: EmbeddingModel,
    validate: Validator,
    epoch: int,
    history: list[Metrics],
    best: dict[str, Any] | None,
    on_validation: ValidationCallback | None,
) -> dict[str, Any] | None:
    """Score this epoch; returns the best epoch so far (this one, with a copy of its weights, if it beat it)."""
    metrics = validate(model)
    history.append(metrics)
    if on_validation:
        on_validation(epoch, metrics)
    score = validation_score(metrics)
    if score is None or (best is not None and score <= best["score"]):
        return best
    weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return {"epoch": epoch, "score": score, "model": weights}
