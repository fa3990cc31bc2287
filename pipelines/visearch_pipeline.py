"""The visearch pipeline: preprocess → train → evaluate (gate) → embed → upsert, per category.

Declarative: ``dsl.ParallelFor`` over the categories chosen at submit time, five components per
category, no logic in the body. The embed step fans out over the category's shards (a nested
``ParallelFor``); the upsert collects their outputs (``dsl.Collected``). ``python -m pipelines.visearch_pipeline [OUTPUT]`` compiles it.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter types at runtime.
import inspect
import sys
from pathlib import Path
from typing import Any, List  # noqa: UP035 - kfp parses typing.List, not list[str]

from kfp import compiler, dsl, kubernetes

from components import build
from visearch.categories import Category
from visearch.step_resources import ACCELERATED_STEPS, RETRIES, RETRY_BACKOFF, ClusterPlan, cluster_plan
from visearch.train_params import run_parameters

PIPELINE_NAME = "visearch"
COMPILED = Path(__file__).with_name("visearch-pipeline.yaml")
# kustomize reads only files under k8s/: the ConfigMap ships a copy of the compiled pipeline, and
# each overlay one compiled for the train image it deploys (its `images:` entry).
K8S = Path(__file__).resolve().parent.parent / "k8s"
K8S_COPY = K8S / "base" / "pipeline" / "visearch-pipeline.yaml"
# kustomize reads no file outside its folder, so the service's and the pipeline namespace's
# ConfigMaps each need their own copy of the shipped registry; this command refreshes both.
REGISTRY_COPIES = (K8S / "base" / "categories.yaml", K8S / "pipeline-env" / "categories.yaml")
TRAIN_IMAGE_NAME = "visearch-train"
# On a cluster the steps read their engines from these (both optional; README "Deploy").
CONFIG_MAP = "visearch-config"
SECRET = "visearch-secrets"
CONFIG_ENV = (
    "QDRANT_URL",
    "MINIO_HOST",
    "MINIO_BUCKET_NAME",
    "MINIO_MAIN_PATH",
    "MINIO_SECURE",
    "MINIO_REGION",
    "MLFLOW_TRACKING_URI",
    "VISEARCH_CATEGORIES",
    "VISEARCH_REQUIRE_ENGINES",
    "QDRANT_SHARD_NUMBER",
    "QDRANT_REPLICATION_FACTOR",
)
# The registry ConfigMap, mounted where VISEARCH_CATEGORIES points (k8s/base/config.yaml).
CATEGORIES_CONFIG_MAP = "visearch-categories"
CATEGORIES_MOUNT = "/etc/visearch"
# MLFLOW_TRACKING_USERNAME/PASSWORD: MLflow's client sends them to the server's basic-auth app.
SECRET_ENV = (
    "QDRANT_API_KEY",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
# Every step's pod carries this label: the NetworkPolicies of k8s/base/network.yaml let such pods
# reach Qdrant, MinIO and MLflow.
POD_LABEL = ("app.kubernetes.io/component", "visearch-pipeline-step")
CLUSTER_PARALLELISM = 4
DESCRIPTION = "Train, gate and index one visual search model per category."
# Each run parameter: (type, the value that keeps each category's registry value, description).
TRAINING = {p.name: (p.kind, p.unset, p.help) for p in run_parameters()}
RUN_PARAMETERS: dict[str, tuple[type, Any, str]] = {
    **TRAINING,
    "embed_shards": (int, -1, "Embed pods per category, their outputs collected by the upsert"),
}


def _docstring() -> str:
    """The pipeline's docstring: kfp shows each ``Args`` entry beside its run parameter in the dashboard."""
    lines = [f"{DESCRIPTION}", "", "Args:", "    categories: The categories to build, each in its own loop iteration."]
    lines += [
        f"    {name}: {text}; {unset!r} keeps the registry's value" for name, (_, unset, text) in RUN_PARAMETERS.items()
    ]
    return "\n".join(lines)


def _on_cluster(task: Any, step: str, plan: ClusterPlan | None) -> Any:
    """Set what a step needs on a cluster; kfp.local ignores all of it (its steps inherit this process's env).

    Engine settings from a ConfigMap and a Secret, the registry as a volume, the step's resources,
    an accelerator where the plan has one, and retries.

    KFP's cache is off: the steps read state that KFP cannot see (object store, registry, index).
    The library skips work itself instead: an unchanged category reuses its trained model and its
    live collection.
    """
    task.set_caching_options(False)
    if plan is not None:
        wanted = plan.resources[step]
        for setter, value in (
            (task.set_cpu_request, wanted.cpu),
            (task.set_memory_request, wanted.memory),
            (task.set_cpu_limit, wanted.cpu_limit),
            (task.set_memory_limit, wanted.memory_limit),
        ):
            if value:
                setter(value)
        if plan.accelerator and step in ACCELERATED_STEPS:
            kind, count = plan.accelerator
            task.set_accelerator_type(kind).set_accelerator_limit(count)
        task.set_retry(num_retries=RETRIES, backoff_duration=RETRY_BACKOFF, backoff_factor=2)
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, {name: name for name in CONFIG_ENV}, optional=True)
    kubernetes.use_secret_as_env(task, SECRET, {name: name for name in SECRET_ENV}, optional=True)
    kubernetes.use_config_map_as_volume(task, CATEGORIES_CONFIG_MAP, mount_path=CATEGORIES_MOUNT, optional=True)
    kubernetes.add_pod_label(task, *POD_LABEL)
    return task


def build_pipeline(image: str, *, parallelism: int = CLUSTER_PARALLELISM, plan: ClusterPlan | None = None) -> Any:
    """The pipeline with every component on ``image``.

    Args:
        image: The train image (``Settings.train_image``).
        parallelism: Categories processed at once; 1 locally, where embedded Qdrant and SQLite MLflow
            allow one writer process.
        plan: Per-step resources, accelerator and retries for a cluster (``visearch.step_resources``);
            None locally.
    """
    steps = build(image)

    def visearch(categories: List[str], *values: Any) -> None:  # noqa: UP006
        given = dict(zip(RUN_PARAMETERS, values, strict=True))
        with dsl.ParallelFor(items=categories, parallelism=parallelism, name="category") as category:
            prep = _on_cluster(
                steps.preprocess(
                    category=category,
                    pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    **{name: given[name] for name in TRAINING},
                ),
                "preprocess",
                plan,
            )
            trained = _on_cluster(
                steps.train(category=category, manifest=prep.outputs["manifest"], run_id=prep.outputs["Output"]),
                "train",
                plan,
            )
            gated = _on_cluster(
                steps.evaluate(
                    category=category,
                    manifest=prep.outputs["manifest"],
                    run_id=prep.outputs["Output"],
                    model=trained.outputs["model"],
                    baseline=trained.outputs["baseline"],
                ),
                "evaluate",
                plan,
            )
            shards = _on_cluster(steps.shards(category=category, embed_shards=given["embed_shards"]), "shards", plan)
            # Each item carries its category: kfp.local hands an inner loop's body the inner item
            # in place of any outer loop item (kfp 2.17), so the body reads only its own item.
            with dsl.ParallelFor(items=shards.output, name="shard") as shard:
                vectors = _on_cluster(
                    steps.embed(
                        category=shard.category,
                        manifest=prep.outputs["manifest"],
                        model=gated.outputs["champion"],
                        shard=shard.shard,
                    ),
                    "embed",
                    plan,
                )
            _on_cluster(
                steps.upsert(
                    category=category,
                    manifest=prep.outputs["manifest"],
                    model=gated.outputs["champion"],
                    embeddings=dsl.Collected(vectors.outputs["embeddings"]),
                    run_id=prep.outputs["Output"],
                ),
                "upsert",
                plan,
            )

    # The run parameters are generated from their one declaration (TrainParams): kfp reads the
    # pipeline's interface from its signature and the descriptions from its docstring's Args.
    visearch.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("categories", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=List[str])]  # noqa: UP006
        + [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=unset, annotation=kind)
            for name, (kind, unset, _) in RUN_PARAMETERS.items()
        ]
    )
    visearch.__doc__ = _docstring()
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(visearch)


def compile_pipeline(
    output: Path, image: str, categories: list[Category], *, parallelism: int = CLUSTER_PARALLELISM
) -> Path:
    """Write the pipeline YAML that KFP accepts (upload in the dashboard, or ``kfp.Client``).

    ``categories``: the ones it will run; they set each step's resources and the accelerator.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(image, parallelism=parallelism, plan=cluster_plan(categories))
    compiler.Compiler().compile(pipeline, str(output))
    return output


def overlay_copies() -> dict[Path, str]:
    """Each overlay's pipeline copy and the train image it must run on (from its kustomization's ``images:``)."""
    import yaml

    copies = {}
    for kustomization in sorted(K8S.glob("overlays/*/kustomization.yaml")):
        images = yaml.safe_load(kustomization.read_text()).get("images", [])
        for entry in images:
            if entry["name"] == TRAIN_IMAGE_NAME:
                image = f"{entry.get('newName', TRAIN_IMAGE_NAME)}:{entry.get('newTag', 'latest')}"
                copies[kustomization.parent / "pipeline" / COMPILED.name] = image
    return copies


if __name__ == "__main__":
    from visearch.categories import load_registry
    from visearch.settings import Settings

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else COMPILED
    categories = load_registry().categories
    print(compile_pipeline(target, Settings().train_image, categories))
    if target == COMPILED:
        K8S_COPY.write_bytes(COMPILED.read_bytes())
        print(K8S_COPY)
        for copy, image in overlay_copies().items():
            print(compile_pipeline(copy, image, categories))
        from visearch.categories import default_registry_path

        for registry_copy in REGISTRY_COPIES:
            registry_copy.write_bytes(default_registry_path().read_bytes())
            print(registry_copy)
