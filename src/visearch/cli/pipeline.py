"""`visearch pipeline ...`: compile the Kubeflow pipeline, run it here with kfp.local, or submit it to Kubeflow.

The pipeline and its components are the top-level ``pipelines`` and ``components`` packages of
the distribution; they import kfp (the ``pipeline`` extra), so they are imported only when a
command needs them, and without kfp the commands say which extra to install.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from visearch.cli.app import app
from visearch.cli.options import train_options
from visearch.errors import ConfigError, PipelineFailedError
from visearch.settings import Settings

if TYPE_CHECKING:
    from pipelines.local import LocalRun
    from pipelines.submit import Kfp, RunLine

pipeline_app = typer.Typer(
    help="Compile the Kubeflow pipeline, run it locally with kfp.local, or submit and list runs on Kubeflow.",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")


def needs_kfp(exc: ModuleNotFoundError) -> ConfigError:
    """The error for a pipeline command run without the ``pipeline`` extra."""
    return ConfigError(f"the pipeline needs {exc.name}: install the pipeline extra (pip install 'visearch[pipeline]')")


@pipeline_app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="YAML file to write")] = Path("visearch-pipeline.yaml"),
    image: Annotated[str | None, typer.Option(help="Train image (default: the TRAIN_IMAGE setting)")] = None,
    parallelism: Annotated[int, typer.Option(min=0, help="Categories processed at once on the cluster")] = 4,
    categories: Annotated[
        str | None,
        typer.Option(help="Comma-separated categories it will run (their resources and accelerator); default: all"),
    ] = None,
) -> None:
    """Compile the pipeline to YAML for KFP (upload it in the dashboard or submit with kfp.Client).

    Each step requests the largest resources among the categories, and train/evaluate/embed an
    accelerator when a category's registry entry asks for one (train.accelerator).
    """
    try:
        from pipelines.visearch_pipeline import compile_pipeline
    except ModuleNotFoundError as exc:
        raise needs_kfp(exc) from exc

    from visearch.categories import load_registry

    settings = Settings()
    registry = load_registry(settings.visearch_categories)
    names = [name.strip() for name in (categories or "").split(",") if name.strip()] or registry.names()
    chosen = [registry.get(name) for name in names]
    try:
        path = compile_pipeline(output, image or settings.train_image, chosen, parallelism=parallelism)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from exc
    typer.echo(f"pipeline written to {path}")


@pipeline_app.command("run")
@train_options()
def run_command(
    categories: Annotated[str, typer.Option(help="Comma-separated category names")],
    embed_shards: Annotated[
        int | None, typer.Option(min=1, help="Embed steps per category, their outputs joined by the upsert")
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(help="Where kfp's full log goes (default: VISEARCH_HOME/kfp/run-<time>.log)"),
    ] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run the pipeline here (kfp.local) on the embedded engines; prints where each artifact landed.

    The terminal shows one status line per step and category (a progress bar while a long step
    runs) and the gate's decision; kfp's full log goes to a file, whose path is printed.
    """
    from visearch.categories import load_registry

    settings = Settings()
    registry = load_registry(settings.visearch_categories)
    names = [name.strip() for name in categories.split(",") if name.strip()]
    if not names:
        raise ConfigError("--categories needs at least one category name")
    for name in names:
        registry.get(name).train.with_overrides(overrides)  # bad values fail here, not in a step
    started = time.monotonic()
    log_file = log_file or default_log_file(settings)
    typer.echo(f"running the pipeline for {', '.join(names)} with kfp.local; full log: {log_file}")
    try:
        result = run_pipeline(settings, names, overrides, log_file=log_file, embed_shards=embed_shards)
    except PipelineFailedError as exc:
        raise PipelineFailedError(f"{exc} (full log: {log_file})") from exc
    typer.echo("")
    typer.echo(result.describe())
    typer.echo(f"full log: {log_file}")
    typer.echo(
        f"\npipeline finished in {time.monotonic() - started:.0f} s; "
        f"compare runs: mlflow ui --backend-store-uri {settings.tracking_uri}"
    )


def default_log_file(settings: Settings) -> Path:
    """A new log file for one local run: ``VISEARCH_HOME/kfp/run-<local time>.log``."""
    return settings.home / "kfp" / f"run-{datetime.now():%Y%m%d-%H%M%S-%f}.log"


def run_pipeline(
    settings: Settings, categories: list[str], overrides: dict[str, Any] | None = None, **local: Any
) -> LocalRun:
    """Run the pipeline locally (kfp.local): where each category's artifacts landed.

    Checks the engines first (an engine that is down fails here, in seconds). ``local``: the
    keyword options of ``pipelines.local.run_local`` (``log_file``, ``embed_shards``).
    """
    try:
        from pipelines.local import run_local
    except ModuleNotFoundError as exc:
        raise needs_kfp(exc) from exc

    from visearch.storage import make_store
    from visearch.tracking import check_reachable

    if settings.qdrant_location == ":memory:":
        raise ConfigError("QDRANT_URL=:memory: cannot work here: every pipeline step is its own process")
    # An engine that is down fails here, in seconds, not in a step after minutes of retries.
    check_reachable(settings)
    make_store(settings)
    try:
        return run_local(settings, categories, overrides, **local)
    except RuntimeError as exc:
        # kfp.local raises RuntimeError when a task fails; the task's own log above says why.
        raise PipelineFailedError(f"the pipeline failed: {exc}") from exc


# The KFP API options of `submit` and `runs` (defaults: KFP_HOST, KFP_NAMESPACE, KFP_TOKEN).
Host = Annotated[
    str | None, typer.Option(help="Kubeflow Pipelines API, e.g. https://kubeflow.example.com/pipeline (KFP_HOST)")
]
Namespace = Annotated[str | None, typer.Option(help="Profile namespace on a multi-user Kubeflow (KFP_NAMESPACE)")]
Token = Annotated[str | None, typer.Option(help="Bearer token for the API; prefer KFP_TOKEN (kept off shell history)")]
Experiment = Annotated[str, typer.Option(help="KFP experiment the run belongs to (created when missing)")]


def connect(settings: Settings, host: str | None, namespace: str | None, token: str | None) -> Kfp:
    """A client on the KFP API that the options (or the KFP_* settings) name."""
    try:
        from pipelines.submit import Kfp, Target
    except ModuleNotFoundError as exc:
        raise needs_kfp(exc) from exc

    host = host or settings.kfp_host
    if not host:
        raise ConfigError("no Kubeflow Pipelines API given: pass --host or set KFP_HOST")
    token = token or (settings.kfp_token.get_secret_value() if settings.kfp_token else None)
    return Kfp(Target(host, namespace or settings.kfp_namespace, token))


@pipeline_app.command("submit")
@train_options()
def submit_command(
    categories: Annotated[str, typer.Option(help="Comma-separated category names")],
    host: Host = None,
    namespace: Namespace = None,
    token: Token = None,
    experiment: Experiment = "visearch",
    run_name: Annotated[
        str | None, typer.Option(help="Run name in the dashboard (default: categories and time)")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Train image (default: the TRAIN_IMAGE setting)")] = None,
    embed_shards: Annotated[
        int | None, typer.Option(min=1, help="Embed steps per category, their outputs joined by the upsert")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends; the exit code is its result")] = False,
    every: Annotated[
        str | None, typer.Option(help="Schedule a recurring run instead, on this cron, e.g. '0 3 * * *' (daily 03:00)")
    ] = None,
    poll_seconds: Annotated[float, typer.Option(min=0.01, help="Seconds between status checks with --wait")] = 10.0,
    *,
    overrides: dict[str, Any],
) -> None:
    """Compile the pipeline and run it on Kubeflow Pipelines, once or on a schedule (--every).

    The package is uploaded as a version of the pipeline "visearch"; the categories and the
    training options given become the run's parameters (the others keep each category's registry value).
    """
    from visearch.categories import load_registry

    if wait and every:
        raise ConfigError("--wait follows one run; a schedule (--every) starts many: use one of them")
    settings = Settings()
    registry = load_registry(settings.visearch_categories)
    names = [name.strip() for name in categories.split(",") if name.strip()]
    if not names:
        raise ConfigError("--categories needs at least one category name")
    chosen = [registry.get(name) for name in names]
    for category in chosen:
        category.train.with_overrides(overrides)  # bad values fail here, not in a step on the cluster
    kfp = connect(settings, host, namespace, token)  # before compiling: a wrong host fails in seconds
    from pipelines.visearch_pipeline import compile_pipeline

    shards = {} if embed_shards is None else {"embed_shards": embed_shards}
    arguments = {"categories": names, **overrides, **shards}
    name = run_name or f"visearch {','.join(names)} {datetime.now():%Y-%m-%d %H:%M:%S}"
    with tempfile.TemporaryDirectory(prefix="visearch-submit-") as folder:
        package = compile_pipeline(Path(folder) / "visearch-pipeline.yaml", image or settings.train_image, chosen)
        submitted = kfp.submit(package, arguments, experiment=experiment, name=name, cron=every)
    schedule = f" on cron {every!r}" if every else ""
    typer.echo(
        f"{submitted.kind} {submitted.name!r} submitted{schedule} in experiment {experiment!r}: {submitted.link}"
    )
    if not wait:
        return

    def report(run: RunLine) -> None:
        typer.echo(f"{datetime.now():%H:%M:%S} {run.name}: {run.state}")

    run = kfp.wait(submitted.id, report, every=poll_seconds)
    if run.state != "SUCCEEDED":
        why = f": {run.error}" if run.error else ""
        raise PipelineFailedError(f"run {run.name!r} ended {run.state}{why} (its steps and logs: {submitted.link})")


@pipeline_app.command("runs")
def runs_command(
    host: Host = None,
    namespace: Namespace = None,
    token: Token = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs")] = 10,
) -> None:
    """Recent runs on Kubeflow Pipelines, newest first: name, state, created, id."""
    for run in connect(Settings(), host, namespace, token).runs(experiment=experiment, limit=limit):
        typer.echo(run.line())
