"""Submit, schedule, follow and list runs of the pipeline on a Kubeflow Pipelines server (``kfp.Client``).

The adapter behind ``visearch pipeline submit`` and ``visearch pipeline runs``. The compiled
package is uploaded as a version of the pipeline ``visearch`` (one version per distinct YAML, so a
schedule and the dashboard name what ran), then run once or on a cron schedule in an experiment.
Every failure of the KFP API becomes one visearch error: unreachable, 401/403, or a refusal.
"""

import contextlib
import hashlib
import io
import json
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import urllib3

from pipelines.visearch_pipeline import DESCRIPTION, PIPELINE_NAME
from visearch.errors import ConfigError, KfpAuthError, KfpError, KfpUnavailableError, UnknownExperimentError

HEALTHZ = "/apis/v2beta1/healthz"
PROBE_SECONDS = 10.0
POLL_SECONDS = 10.0
SUCCEEDED = "SUCCEEDED"
TERMINAL = frozenset({SUCCEEDED, "FAILED", "CANCELED", "SKIPPED"})
EQUALS = 1  # the filter operation kfp.Client itself sends (filter.proto)


@dataclass(frozen=True)
class Target:
    """Where the KFP API is and who calls it: ``host`` as kfp.Client takes it (…/pipeline on a Kubeflow)."""

    host: str
    namespace: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        # kfp.Client's own normalisation, applied to our probe too: https when no scheme, no trailing slash.
        host = self.host if self.host.startswith("http") else f"https://{self.host}"
        object.__setattr__(self, "host", host.rstrip("/"))


@dataclass(frozen=True)
class Submitted:
    """A run or recurring run that KFP accepted."""

    kind: str  # "run" or "recurring run"
    id: str
    name: str
    link: str


@dataclass(frozen=True)
class RunLine:
    """One run as ``visearch pipeline runs`` lists it."""

    id: str
    name: str
    state: str
    created: datetime | None
    error: str = ""

    @classmethod
    def of(cls, run: Any) -> "RunLine":
        """From kfp's ``V2beta1Run``."""
        error = getattr(run.error, "message", None) or ""
        return cls(
            run.run_id, run.display_name or "", str(run.state or "RUNTIME_STATE_UNSPECIFIED"), run.created_at, error
        )

    def line(self) -> str:
        """``name  state  created  id`` on one line."""
        created = f"{self.created:%Y-%m-%d %H:%M:%S}" if self.created else "-"
        return f"{self.name:<40} {self.state:<10} {created:<19} {self.id}"


def kfp_cron(expression: str) -> str:
    """The cron text KFP takes: robfig/cron with a seconds field first, so a crontab line gets ``0`` prepended.

    ``"0 3 * * *"`` → ``"0 0 3 * * *"``; six fields and ``@daily``/``@every 6h`` pass as they are.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        return text
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ConfigError(f"--every takes a cron expression of 5 (crontab) or 6 fields, got {expression!r}")
    return text if len(fields) == 6 else f"0 {text}"


class Kfp:
    """A ``kfp.Client`` on one KFP API whose failures are visearch errors."""

    def __init__(self, target: Target) -> None:
        """Check the API answers (seconds, not kfp.Client's five retries), then open the client."""
        self.target = target
        _probe(target)
        with self._calls():
            self.client = kfp.Client(
                host=target.host, namespace=target.namespace or "kubeflow", existing_token=target.token
            )

    def submit(
        self, package: Path, arguments: dict[str, Any], *, experiment: str, name: str, cron: str | None = None
    ) -> Submitted:
        """Upload ``package`` as a pipeline version, then run it once (or on ``cron``) in ``experiment``."""
        namespace = self.target.namespace
        with self._calls():
            pipeline_id, version_id = self._upload(package)
            experiment_id = self.client.create_experiment(name=experiment, namespace=namespace).experiment_id
            reference = {"params": arguments, "pipeline_id": pipeline_id, "version_id": version_id}
            if cron is None:
                run = self.client.run_pipeline(experiment_id=experiment_id, job_name=name, **reference)
                return Submitted("run", run.run_id, name, f"{self.target.host}/#/runs/details/{run.run_id}")
            # One refresh at a time (two pipelines on one category wait on each other's index lock),
            # and no backfill of the runs a paused schedule missed: the next one builds the same state.
            schedule = self.client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                cron_expression=kfp_cron(cron),
                max_concurrency=1,
                no_catchup=True,
                **reference,
            )
        link = f"{self.target.host}/#/recurringrun/details/{schedule.recurring_run_id}"
        return Submitted("recurring run", schedule.recurring_run_id, name, link)

    def wait(self, run_id: str, report: Callable[[RunLine], None], *, every: float = POLL_SECONDS) -> RunLine:
        """Poll the run until it ends; ``report`` sees it each time its state changes."""
        last = ""
        while True:
            with self._calls():
                run = RunLine.of(self.client.get_run(run_id))
            if run.state != last:
                report(run)
                last = run.state
            if run.state in TERMINAL:
                return run
            time.sleep(every)

    def runs(self, *, experiment: str | None = None, limit: int = 10) -> list[RunLine]:
        """The ``limit`` most recent runs (of ``experiment``), newest first."""
        namespace = self.target.namespace
        with self._calls():
            experiment_id = self._experiment_id(experiment) if experiment else None
            found = self.client.list_runs(
                page_size=limit, sort_by="created_at desc", experiment_id=experiment_id, namespace=namespace
            ).runs
        lines = [RunLine.of(run) for run in found or []]
        return sorted(lines, key=lambda run: run.created.timestamp() if run.created else 0.0, reverse=True)

    def _experiment_id(self, name: str) -> str:
        namespace = self.target.namespace
        try:
            return str(self.client.get_experiment(experiment_name=name, namespace=namespace).experiment_id)
        except ValueError as exc:  # kfp's way of saying none (or several) have that name
            where = f" in namespace {namespace}" if namespace else ""
            raise UnknownExperimentError(f"{exc} (KFP at {self.target.host}{where})") from exc

    def _upload(self, package: Path) -> tuple[str, str]:
        """The pipeline and version ids that hold ``package``, uploading it where no version has these bytes."""
        namespace = self.target.namespace
        found = self.client.list_pipelines(filter=_named(PIPELINE_NAME), namespace=namespace).pipelines
        if not found:
            pipeline = self.client.upload_pipeline(
                str(package), pipeline_name=PIPELINE_NAME, description=DESCRIPTION, namespace=namespace
            )
            first = self.client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc", page_size=1)
            return pipeline.pipeline_id, first.pipeline_versions[0].pipeline_version_id
        pipeline_id = found[0].pipeline_id
        version = f"{PIPELINE_NAME}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"
        same = self.client.list_pipeline_versions(pipeline_id, filter=_named(version), page_size=1).pipeline_versions
        if same:
            return pipeline_id, same[0].pipeline_version_id
        uploaded = self.client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id
        )
        return pipeline_id, uploaded.pipeline_version_id

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """Turn kfp's errors into visearch errors; keep its printed links and version warning off the output."""
        host = self.target.host
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                yield
        except kfp_server_api.ApiException as exc:
            if not exc.status:  # kfp's wrapping of a TLS failure
                raise KfpUnavailableError(f"Kubeflow Pipelines at {host} cannot be reached: {exc.reason}") from exc
            raise _refusal(self.target, exc.status, exc.body) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise KfpUnavailableError(f"Kubeflow Pipelines at {host} cannot be reached: {exc}") from exc


def _named(name: str) -> str:
    """A list filter on the display name."""
    return json.dumps({"predicates": [{"operation": EQUALS, "key": "display_name", "stringValue": name}]})


def _probe(target: Target) -> None:
    """One GET of the API's healthz: unreachable, refused or not KFP's API fails here, in seconds."""
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    request = urllib.request.Request(target.host + HEALTHZ, headers=headers)
    try:
        # No proxy from the environment: kfp.Client's own calls use none (only its `proxy` argument).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=PROBE_SECONDS) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise _refusal(target, exc.code, exc.read()) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KfpUnavailableError(f"Kubeflow Pipelines at {target.host} cannot be reached: {reason}") from exc
    try:
        json.loads(body)
    except ValueError as exc:
        # A Kubeflow behind a login (Dex, OIDC) redirects an unauthenticated call to an HTML page.
        raise KfpAuthError(
            f"{target.host}{HEALTHZ} answered no JSON (a login page?): is this the KFP API "
            "(…/pipeline on a Kubeflow), and is a token set (--token or KFP_TOKEN)?"
        ) from exc


def _refusal(target: Target, status: int, body: bytes | str | None) -> KfpError:
    """The error for an HTTP refusal, with the server's own message."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body or ""
    with contextlib.suppress(ValueError, AttributeError):
        text = json.loads(text).get("message") or text
    detail = f": {' '.join(text.split())[:300]}" if text.strip() else ""
    where = f"Kubeflow Pipelines at {target.host} answered {status}"
    if status == 401:
        return KfpAuthError(f"{where} (not authenticated): set a token with --token or KFP_TOKEN{detail}")
    if status == 403:
        namespace = target.namespace or "(none given: --namespace or KFP_NAMESPACE)"
        return KfpAuthError(f"{where} (forbidden): the token has no access to namespace {namespace}{detail}")
    return KfpError(f"{where}{detail}")
