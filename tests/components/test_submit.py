"""`visearch pipeline submit` and `runs` against a local server that speaks the KFP v2 REST API.

No KFP backend runs here, so its API contract does: a stdlib HTTP server answers the paths
``kfp.Client`` calls (healthz, pipeline upload and versions, experiments, runs, recurring runs)
and records every request. The tests assert what reached it: the compiled package, the
experiment, the run name and the run's parameters, so a change in how the CLI uses kfp.Client
fails here, not on a cluster. The CLI runs as a user runs it, in a subprocess.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import closed_url
from tests.unit.cli.runs import assert_one_line_error, one_error_line

API = "/apis/v2beta1"
CATEGORY = "fashion-mnist"  # the shipped registry's: no data is read, only its train settings
IMAGE = "registry.example.com/visearch-train:test"


@dataclass
class Request:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def upload(self) -> bytes:
        """The file of a multipart pipeline upload."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        (part,) = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "uploadfile"]
        return bytes(part.get_payload(decode=True))


@dataclass
class State:
    """What the fake KFP holds, and what it was asked."""

    requests: list[Request] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    # The states GET /runs/{id} answers, one per call; the last one repeats.
    states: list[str] = field(default_factory=lambda: ["SUCCEEDED"])
    token: str | None = None

    def called(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == API + path]


def _named(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    """kfp.Client's display-name filter, applied."""
    if "filter" not in query:
        return items
    (predicate,) = json.loads(query["filter"][0])["predicates"]
    assert predicate["key"] == "display_name" and predicate["operation"] in (1, "EQUALS")
    return [item for item in items if item["display_name"] == predicate["stringValue"]]


def _created(number: int) -> str:
    return f"2025-01-01T00:{number:02d}:00Z"


class Handler(BaseHTTPRequestHandler):
    """The v2beta1 paths kfp.Client uses, answered from ``server.state``."""

    server: Any

    def log_message(self, *args: Any) -> None:  # the test output stays readable
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        state: State = self.server.state
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = Request(method, url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body)
        state.requests.append(request)
        if state.token and request.headers.get("authorization") != f"Bearer {state.token}":
            status = 403 if "authorization" in request.headers else 401
            return self._answer(status, {"code": 16, "message": "token refused by the test server"})
        try:
            answer = self._route(state, method, url.path.removeprefix(API), request)
        except Exception as exc:  # noqa: BLE001 - a bug of the fake shows as a server error, not a dropped socket
            return self._answer(500, {"code": 13, "message": f"test server: {type(exc).__name__}: {exc}"})
        if answer is None:
            return self._answer(404, {"code": 5, "message": f"no route {method} {url.path}"})
        return self._answer(200, answer)

    def _route(self, state: State, method: str, path: str, request: Request) -> dict[str, Any] | None:
        query, number = request.query, len(state.requests)
        parts = path.strip("/").split("/")
        if (method, path) == ("GET", "/healthz"):
            return {"multi_user": False, "pipeline_store": "database"}
        if (method, path) == ("GET", "/pipelines"):
            return {"pipelines": _named(state.pipelines, query)}
        if (method, path) == ("POST", "/pipelines/upload"):
            pipeline = {"pipeline_id": f"p{number}", "display_name": query["name"][0], "created_at": _created(number)}
            state.pipelines.append(pipeline)
            version = {"pipeline_version_id": f"v{number}", "display_name": query["name"][0]}
            state.versions.append({**version, "pipeline_id": pipeline["pipeline_id"], "created_at": _created(number)})
            return pipeline
        if (method, path) == ("POST", "/pipelines/upload_version"):
            version = {"pipeline_version_id": f"v{number}", "display_name": query["name"][0]}
            state.versions.append({**version, "pipeline_id": query["pipelineid"][0], "created_at": _created(number)})
            return state.versions[-1]
        if method == "GET" and len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "versions":
            mine = sorted((v for v in state.versions if v["pipeline_id"] == parts[1]), key=lambda v: v["created_at"])
            return {"pipeline_versions": _named(mine[::-1], query)}
        if (method, path) == ("GET", "/experiments"):
            return {"experiments": _named(state.experiments, query)}
        if (method, path) == ("POST", "/experiments"):
            state.experiments.append({**request.json(), "experiment_id": f"e{number}"})
            return state.experiments[-1]
        if (method, path) == ("POST", "/runs"):
            state.runs.append({**request.json(), "run_id": f"r{number}", "state": "PENDING", "created_at": _created(0)})
            return state.runs[-1]
        if (method, path) == ("GET", "/runs"):
            wanted = query.get("experiment_id", [None])[0]
            found = [run for run in state.runs if wanted in (None, run["experiment_id"])]
            return {"runs": found[: int(query["page_size"][0])]}
        if method == "GET" and len(parts) == 2 and parts[0] == "runs":
            run = next(run for run in state.runs if run["run_id"] == parts[1])
            run["state"] = state.states.pop(0) if len(state.states) > 1 else state.states[0]
            return {**run, "error": {"message": "train: out of memory"}} if run["state"] == "FAILED" else run
        if (method, path) == ("POST", "/recurringruns"):
            return {**request.json(), "recurring_run_id": f"rr{number}"}
        return None

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, State]]:
    """A running fake KFP API: its URL and its state."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", server.state  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`visearch ARGS` as a user runs it: a clean environment (no KFP_*, no kfp context file), no .env."""
    prefixes = ("KFP_", "KF_PIPELINES_", "QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_", "ENGINE_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    clean.update(HOME=str(tmp_path), VISEARCH_HOME=str(tmp_path / "home"), **env)
    return subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def compiled(tmp_path: Path) -> bytes:
    """The package `visearch pipeline compile` writes for CATEGORY on IMAGE."""
    from pipelines.visearch_pipeline import compile_pipeline
    from visearch.categories import load_registry

    return compile_pipeline(tmp_path / "expected.yaml", IMAGE, [load_registry().get(CATEGORY)]).read_bytes()


def test_submit_uploads_the_compiled_pipeline_runs_it_with_the_parameters_and_waits(
    kfp_api: tuple[str, State], tmp_path: Path
) -> None:
    url, state = kfp_api
    state.states = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    options = ["--categories", CATEGORY, "--host", url, "--image", IMAGE, "--experiment", "nightly"]
    options += ["--run-name", "shoes refresh", "--epochs", "2", "--lr", "0.01", "--embedder-layers", "64,16"]
    result = cli(tmp_path, "pipeline", "submit", *options, "--embed-shards", "2", "--wait", "--poll-seconds", "0.05")
    assert result.returncode == 0, result.stderr

    (upload,) = state.called("POST", "/pipelines/upload")
    assert upload.query["name"] == ["visearch"]
    assert upload.upload() == compiled(tmp_path)  # exactly what `visearch pipeline compile` writes
    (experiment,) = state.called("POST", "/experiments")
    assert experiment.json()["display_name"] == "nightly"
    (created,) = state.called("POST", "/runs")
    run = created.json()
    assert run["display_name"] == "shoes refresh"
    assert run["experiment_id"] == state.experiments[0]["experiment_id"]
    version = state.versions[0]
    assert run["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    # Only what was given: every other parameter keeps the category's registry value on the cluster.
    assert run["runtime_config"]["parameters"] == {
        "categories": [CATEGORY],
        "epochs": 2,
        "lr": 0.01,
        "embedder_layers": "64,16",
        "embed_shards": 2,
    }
    assert not state.called("POST", "/recurringruns")
    # --wait: polled until a terminal state, one status line per change of state.
    run_id = state.runs[0]["run_id"]
    assert len(state.called("GET", f"/runs/{run_id}")) == 4
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines()[1:]]
    assert lines == ["shoes refresh: PENDING", "shoes refresh: RUNNING", "shoes refresh: SUCCEEDED"]
    assert f"{url}/#/runs/details/{run_id}" in result.stdout.splitlines()[0]


def test_every_schedules_a_recurring_run_on_the_same_version_and_starts_no_run(
    kfp_api: tuple[str, State], tmp_path: Path
) -> None:
    """A pipeline version with these bytes exists already: the schedule runs it, nothing is uploaded."""
    import hashlib

    url, state = kfp_api
    digest = hashlib.sha256(compiled(tmp_path)).hexdigest()[:12]
    state.pipelines.append({"pipeline_id": "p0", "display_name": "visearch"})
    for number, name in enumerate(["visearch", f"visearch-{digest}"]):
        version = {"pipeline_version_id": f"v{number}", "display_name": name, "created_at": _created(number)}
        state.versions.append({**version, "pipeline_id": "p0"})
    state.experiments.append({"experiment_id": "e0", "display_name": "refresh"})
    options = ["--categories", CATEGORY, "--host", url, "--image", IMAGE, "--experiment", "refresh"]
    schedule = ["--run-name", "nightly", "--every", "0 3 * * *", "--mode", "auto"]
    result = cli(tmp_path, "pipeline", "submit", *options, *schedule)
    assert result.returncode == 0, result.stderr

    assert not [r for r in state.requests if r.path.startswith(f"{API}/pipelines/upload")]
    assert not state.called("POST", "/experiments")  # found by name
    assert not state.called("POST", "/runs")
    (scheduled,) = state.called("POST", "/recurringruns")
    body = scheduled.json()
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # KFP's cron has seconds first
    assert body["display_name"] == "nightly" and body["experiment_id"] == "e0"
    assert body["pipeline_version_reference"] == {"pipeline_id": "p0", "pipeline_version_id": "v1"}
    # The nightly refresh: the change log applied, training only where the category's policy says so.
    assert body["runtime_config"]["parameters"] == {"categories": [CATEGORY], "mode": "auto"}
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True and int(body["max_concurrency"]) == 1
    assert "recurring run 'nightly' submitted on cron '0 3 * * *'" in result.stdout


def test_wait_exits_1_with_one_error_line_when_the_run_fails(kfp_api: tuple[str, State], tmp_path: Path) -> None:
    url, state = kfp_api
    state.states = ["RUNNING", "FAILED"]
    options = ["--categories", CATEGORY, "--host", url, "--run-name", "doomed", "--wait", "--poll-seconds", "0.05"]
    result = cli(tmp_path, "pipeline", "submit", *options)
    error = one_error_line(result)
    assert "'doomed' ended FAILED: train: out of memory" in error
    assert result.stdout.splitlines()[-1].endswith("doomed: FAILED")


def test_runs_lists_the_server_runs_newest_first_and_refuses_an_unknown_experiment(
    kfp_api: tuple[str, State], tmp_path: Path
) -> None:
    url, state = kfp_api
    state.experiments += [
        {"experiment_id": "e1", "display_name": "nightly"},
        {"experiment_id": "e2", "display_name": "x"},
    ]
    for minute, name, experiment, run_state in [(5, "older", "e1", "FAILED"), (9, "newest", "e1", "RUNNING")]:
        run = {"run_id": f"id-{name}", "display_name": name, "experiment_id": experiment, "state": run_state}
        state.runs.append({**run, "created_at": _created(minute)})
    state.runs.append({"run_id": "id-other", "display_name": "other", "experiment_id": "e2", "created_at": _created(7)})

    result = cli(tmp_path, "pipeline", "runs", "--experiment", "nightly", "--limit", "5", KFP_HOST=url)
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["newest", "RUNNING", "2025-01-01", "00:09:00", "id-newest"],
        ["older", "FAILED", "2025-01-01", "00:05:00", "id-older"],
    ]
    (listed,) = state.called("GET", "/runs")
    assert listed.query["experiment_id"] == ["e1"] and listed.query["page_size"] == ["5"]
    assert listed.query["sort_by"] == ["created_at desc"]

    missing = cli(tmp_path, "pipeline", "runs", "--host", url, "--experiment", "nope")
    assert_one_line_error(missing, "No experiment is found with name nope")


def test_unreachable_host_and_refused_tokens_are_one_error_line_each(
    kfp_api: tuple[str, State], tmp_path: Path
) -> None:
    url, state = kfp_api
    assert_one_line_error(cli(tmp_path, "pipeline", "runs", "--host", closed_url()), "cannot be reached")
    assert_one_line_error(cli(tmp_path, "pipeline", "runs"), "pass --host or set KFP_HOST")
    state.token = "s3cret"
    assert_one_line_error(cli(tmp_path, "pipeline", "runs", "--host", url), "answered 401 (not authenticated)")
    wrong = cli(tmp_path, "pipeline", "runs", "--host", url, "--namespace", "team-a", KFP_TOKEN="guess")
    assert_one_line_error(wrong, "answered 403 (forbidden): the token has no access to namespace team-a")
    right = cli(tmp_path, "pipeline", "runs", "--host", url, KFP_TOKEN="s3cret")
    assert right.returncode == 0, right.stderr
    assert all(r.headers.get("authorization") == "Bearer s3cret" for r in state.requests[-2:])
