"""Retrieval quality of training recipes on a category, each against the frozen trunk in the same run.

    python benchmarks/quality.py [--category fashion-mnist] [--recipes frozen,seed,default] [--epochs N]
    python benchmarks/quality.py --recipes frozen,fixed,default,early --name quality-fashion-mnist-early-stopping
    visearch prepare fashion-mnist --split all && python benchmarks/quality.py \
        --train-images-per-class 100 --eval-images-per-class 200 --name quality-fashion-mnist-full
    visearch prepare logos-icons --source DIR && python benchmarks/quality.py --category logos-icons

Reports P@1, MAP@R, R-precision, Recall@{1,5,10} in-domain (held-out images of the training
classes vs their training images) and class-disjoint (held-out classes), and the ratio of
MAP@R to the frozen trunk's and to the seed recipe's. Every other recipe is checked against the
targets (issue 18): in-domain MAP@R >= 2.0x frozen, held-out classes >= 1.2x frozen, and >= 1.3x
the seed recipe on both. Each recipe trains on its own split (``validation`` changes it) but
all are evaluated on the same final rows: those of the recipe that sets the most aside for
validation (held-out images and test classes are drawn before validation, so they nest).
``--eval-images-per-class N`` scores every recipe on the same sample of at most N of those rows
per class, as the pipeline's gate does with ``eval_images_per_class``; ``--train-images-per-class``
sets the training budget of every trained recipe.

The demo category's data is copied in when missing; any other category must have been prepared
into the same data home (``VISEARCH_HOME``) first, with ``visearch prepare <category> ...``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_result  # noqa: E402

from visearch.categories import TrainParams, load_registry  # noqa: E402
from visearch.data.demo import ensure_demo_data  # noqa: E402
from visearch.data.manifest import image_paths, load_manifest, sample_per_class  # noqa: E402
from visearch.evaluate import (
    METRICS,  # noqa: E402
    evaluate_model,  # noqa: E402
)
from visearch.settings import Settings  # noqa: E402
from visearch.stages.preprocess import run_preprocess  # noqa: E402
from visearch.stages.train import run_train  # noqa: E402
from visearch.storage import make_store  # noqa: E402
from visearch.train import frozen_model, validation_score  # noqa: E402

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
BASELINES = ("frozen", "seed")
# Least MAP@R ratio per evaluation: (against frozen, against the seed recipe).
TARGETS = {"in_domain": (2.0, 1.3), "class_disjoint": (1.2, 1.3)}


def verdict(evaluation: str, vs_frozen: float, vs_seed: float) -> str:
    """``pass`` or ``fail (...)`` naming each ratio below its target (NaN: that baseline was not run)."""
    least_frozen, least_seed = TARGETS[evaluation]
    misses = [
        f"{label} {ratio:.2f}x < {least:.1f}x"
        for label, ratio, least in (("frozen", vs_frozen, least_frozen), ("seed", vs_seed, least_seed))
        if ratio < least  # NaN compares False: a baseline not run is not a miss
    ]
    return f"fail ({', '.join(misses)})" if misses else "pass"


def times(ratio: float) -> str:
    """``1.23x``, or ``-`` where the baseline was not run."""
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


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
    parser.add_argument(
        "--train-images-per-class",
        type=int,
        default=None,
        metavar="N",
        help="training budget of every trained recipe (train_images_per_class; default: the category's)",
    )
    parser.add_argument(
        "--eval-images-per-class",
        type=int,
        default=None,
        metavar="N",
        help="score every recipe on the same sample of at most N images per class (default: every image)",
    )
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
    elif not store.exists(f"{category.data_prefix}/{category.meta}"):
        sys.exit(
            f"error: category {category.name} has no data in {settings.home}: prepare it into the same "
            f"VISEARCH_HOME first, e.g. visearch prepare {category.name} --source DIR"
        )
    work = settings.work_dir / "bench-quality" / category.name
    recipes = args.recipes.split(",")
    # Command-line settings apply to every trained recipe (a recipe's own keys give way to them).
    given = {"epochs": args.epochs, "train_images_per_class": args.train_images_per_class}
    overrides = {key: value for key, value in given.items() if value is not None}
    trained_params = {
        recipe: TrainParams.model_validate({**category.train.model_dump(), **RECIPES[recipe], **overrides})
        for recipe in recipes
        if recipe != "frozen"
    }
    widest = max(trained_params.values(), key=lambda params: params.validation, default=category.train)
    run_preprocess(settings, store, category, work / "manifest", params=widest, show_progress=False)
    every_row = load_manifest(work / "manifest")
    # One sample for every recipe (drawn from the shared final rows): the ratios compare like with like.
    manifest = sample_per_class(every_row, args.eval_images_per_class, seed=category.train.seed)
    paths = image_paths(store, settings, manifest["key"].tolist())

    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    notes: list[str] = []
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
            scores = [validation_score(metrics) for metrics in trained.validation]
            by_epoch = ", ".join("-" if score is None else f"{score:.3f}" for score in scores)
            validated = f"; validation MAP@R by epoch {by_epoch}" if scores else ""
            notes.append(f"{recipe}: {len(trained.epoch_losses)} epochs run, {kept} kept{stop}{validated}")
        seconds[recipe] = time.monotonic() - started
        results[recipe] = evaluate_model(model, manifest, paths, show_progress=False)
        print(recipe, {e: round(m["mean_average_precision_at_r"], 3) for e, m in results[recipe].items()}, flush=True)

    def ratio(recipe: str, evaluation: str, baseline: str) -> float:
        if baseline not in results:
            return float("nan")
        return (
            results[recipe][evaluation]["mean_average_precision_at_r"]
            / results[baseline][evaluation]["mean_average_precision_at_r"]
        )

    rows, verdicts = [], []
    for recipe in recipes:
        for evaluation, metrics in results[recipe].items():
            vs_frozen, vs_seed = ratio(recipe, evaluation, "frozen"), ratio(recipe, evaluation, "seed")
            target = "" if recipe in BASELINES else verdict(evaluation, vs_frozen, vs_seed)
            if target:
                verdicts.append(f"{recipe} {evaluation}: {target}")
            rows.append(
                [
                    recipe,
                    evaluation,
                    *(metrics[m] for m in METRICS),
                    times(vs_frozen),
                    times(vs_seed),
                    target,
                    f"{seconds[recipe]:.0f}",
                ]
            )
    header = [
        "recipe",
        "evaluation",
        "P@1",
        "MAP@R",
        "R-prec",
        "R@1",
        "R@5",
        "R@10",
        "MAP@R vs frozen",
        "MAP@R vs seed",
        "targets",
        "train s",
    ]
    params = ", ".join(f"{k}={v}" for k, v in category.train.model_dump().items())
    described = "; ".join(f"{name}: {RECIPES.get(name, {})}" for name in recipes if name != "frozen")
    splits = ", ".join(f"{k} {v}" for k, v in manifest["split"].value_counts().items())
    if len(manifest) < len(every_row):
        splits += f" (at most {args.eval_images_per_class} a class of {len(every_row)} images)"
    write_result(
        args.name or f"quality-{category.name}",
        f"Retrieval quality: {category.name}",
        f"{len(every_row)} images; category defaults {params}; recipes {described}"
        + "".join(f"; {key}={value} for every trained recipe" for key, value in overrides.items())
        + f"; evaluated on the split {splits}",
        table(header, rows) + "".join(f"\n- {note}" for note in notes),
    )
    targets = "; ".join(
        f"{evaluation} >= {frozen:.1f}x frozen and >= {seed:.1f}x seed"
        for evaluation, (frozen, seed) in TARGETS.items()
    )
    print(f"targets: {targets}", *verdicts, sep="\n")


if __name__ == "__main__":
    main()
