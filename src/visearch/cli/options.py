"""Command-line options shared by `visearch train` and `visearch pipeline run` (the seed's parameter names)."""

from __future__ import annotations

from typing import Annotated

import typer

from visearch.categories import TrainParams

TrunkModelOpt = Annotated[str | None, typer.Option(help="efficientnet-lite0 or a torchvision name")]
EmbedderLayersOpt = Annotated[str | None, typer.Option(help="Comma-separated widths, e.g. 512,128")]
SplitOpt = Annotated[float | None, typer.Option(help="Fraction of classes for training")]
BatchSizeOpt = Annotated[int | None, typer.Option()]
EpochsOpt = Annotated[int | None, typer.Option(help="Most epochs (early stopping may end sooner)")]
PatienceOpt = Annotated[
    int | None, typer.Option(help="Stop after N epochs without a better validation MAP@R (0: run all epochs)")
]
LrOpt = Annotated[float | None, typer.Option()]
WeightDecayOpt = Annotated[float | None, typer.Option()]
SamplerMOpt = Annotated[int | None, typer.Option(help="Images per class in a batch")]
InputSizeOpt = Annotated[int | None, typer.Option()]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after N steps (smoke runs)")]
TrainImagesPerClassOpt = Annotated[
    int | None,
    typer.Option(
        help="Training budget: train on at most N sampled images per class (all are still indexed; "
        "0: every image, whatever the registry says)"
    ),
]
EvalImagesPerClassOpt = Annotated[
    int | None,
    typer.Option(
        help="Evaluation budget: score each model on at most N sampled images per class "
        f"(default: the category's; {TrainParams.model_fields['eval_images_per_class'].default} unless its registry "
        "entry sets one; 0: every image)"
    ),
]
