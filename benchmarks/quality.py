"""Retrieval quality of training recipes on a category, each against the frozen trunk in the same run.

    python benchmarks/quality.py [--category fashion-mnist] [--recipes frozen,seed,default] [--epochs N]
    python benchmarks/quality.py --recipes frozen,fixed,default,early --name quality-fashion-mnist-early-stopping

Reports P@1, MAP@R, R-precision, Recall@{1,5,10} in-domain (held-out images of the training
classes vs their training images) and class-disjoint (held-out classes), and the ratio of
MAP@R to the frozen trunk's. Each recipe trains on its own split (``validation`` changes it) but
all are evaluated on the same final rows: those of the recipe that sets the most aside for
validation (held-out images and test classes are drawn before validation, so they nest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_result  # noqa: E402

from visearch.categories import TrainParams, load_registry  # noqa: E402
from visearch.data.demo import ensure_demo_data  # noqa: E402
from visearch.data.manifest import image_paths, load_manifest  # noqa: E402
from visearch.evaluate import (
    METRICS,  # noqa: E402
    evaluate_model,  # noqa: E402
)
from visearch.settings import Settings  # noqa: E402
from visearch.steps import run_preprocess, run_train  # noqa: E402
from visearch.storage import make_store  # noqa: E402
from visearch.train import frozen_model  # noqa: E402

# The seed's recipe (CircleLoss + MultiSimilarityMiner, Adam lr 1e-5, batch 8, 1024-wide embedder).
RECIPES: dict[str, dict[str, object]] = {
    "seed": {
        "loss": "circle",
        "lr": 1e-5,
        "batch_size": 8,
        "sampler_m": 4,
        "embedder_layers": [1024],
        "trunk_lr_scale": 1.0,
    },
    "default": {},
    # Before early stopping: no validation split, every epoch runs, the last one is kept.
    "fixed": {"validation": 0.0},
    # epochs as a ceiling: validation picks the best epoch and patience ends the run.
    "early": {"epochs": 12, "patience": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="fashion-mnist")
    parser.add_argument("--recipes", default="frozen,seed,default")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RECIPE:KEY=VALUE",
        help="extra recipe, e.g. --set 'lr3:lr=1e-3' (repeatable; VALUE parsed as JSON)",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--name", default=None, help="result file name (default quality-<category>)")
    args = parser.parse_args()

    import json

    for item in args.set:
        name, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        RECIPES.setdefault(name, {})[key] = json.loads(value)
        if name not in args.recipes.split(","):
            args.recipes += f",{name}"

    settings = Settings()
    registry = load_registry(settings.visearch_categories)
    category = registry.get(args.category)
    store = make_store(settings)
    if category.demo:
        ensure_demo_data(registry, store)
    work = settings.work_dir / "bench-quality" / category.name
    recipes = args.recipes.split(",")
    trained_params = {
        recipe: TrainParams.model_validate(
            {**category.train.model_dump(), **RECIPES[recipe], **({"epochs": args.epochs} if args.epochs else {})}
        )
        for recipe in recipes
        if recipe != "frozen"
    }
    widest = max(trained_params.values(), key=lambda params: params.validation, default=category.train)
    run_preprocess(settings, store, category, work / "manifest", params=widest, show_progress=False)
    manifest = load_manifest(work / "manifest")
    paths = image_paths(store, settings, manifest["key"].tolist())

    rows, frozen_map, notes = [], {}, []
    for recipe in recipes:
        started = time.monotonic()
        if recipe == "frozen":
            model = frozen_model(category.train)
        else:
            params = trained_params[recipe]
            own = work / recipe / "manifest"
            run_preprocess(settings, store, category, own, params=params, show_progress=False)
            trained = run_train(settings, store, own, params, work / recipe, show_progress=False, onnx=False)
            from visearch.model import load_model

            model = load_model(trained.model_dir)
            kept = "last" if trained.best_epoch is None else f"best {trained.best_epoch + 1}"
            stop = ", stopped early" if trained.stopped_early else ""
            notes.append(f"{recipe}: {len(trained.epoch_losses)} epochs run, {kept} kept{stop}")
        seconds = time.monotonic() - started
        result = evaluate_model(model, manifest, paths, show_progress=False)
        for evaluation, metrics in result.items():
            if recipe == "frozen":
                frozen_map[evaluation] = metrics["mean_average_precision_at_r"]
            ratio = metrics["mean_average_precision_at_r"] / frozen_map[evaluation] if frozen_map else float("nan")
            rows.append([recipe, evaluation, *(metrics[m] for m in METRICS), f"{ratio:.2f}x", f"{seconds:.0f}"])
        print(rows[-2:], flush=True)
    header = ["recipe", "evaluation", "P@1", "MAP@R", "R-prec", "R@1", "R@5", "R@10", "MAP@R vs frozen", "train s"]
    params = ", ".join(f"{k}={v}" for k, v in category.train.model_dump().items())
    described = "; ".join(f"{name}: {RECIPES.get(name, {})}" for name in recipes if name != "frozen")
    splits = ", ".join(f"{k} {v}" for k, v in manifest["split"].value_counts().items())
    write_result(
        args.name or f"quality-{category.name}",
        f"Retrieval quality: {category.name}",
        f"{len(manifest)} images; category defaults {params}; recipes {described}; evaluated on the split {splits}",
        table(header, rows) + "".join(f"\n- {note}" for note in notes),
    )


if __name__ == "__main__":
    main()
