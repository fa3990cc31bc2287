"""The cluster contract: everything a workload or a pipeline step references exists where it runs.

Each kustomization is rendered as a user applies it (``kubectl apply -k``: base, pipeline-env, dev,
prod), the compiled pipeline's steps become pods in every namespace that provisions them (the
namespaces holding ``visearch-config``), and each pod is checked name by name: ConfigMaps, Secrets
and their keys (``envFrom``, ``configMapKeyRef``, ``secretKeyRef``, volumes and their items), volume
mounts, service accounts, pull secrets. Prod ships no Secrets: the ones docs/deploy.md tells the user
to create stand in for them. A pod that runs the library (it takes ``visearch-config``) must build a
``Settings`` fit for a cluster from what it is given: engines required and reachable as Services,
each engine's credentials the ones the engine itself was given, the registry mounted where
``VISEARCH_CATEGORIES`` points and valid, a writable ``VISEARCH_HOME``. Images: one train and one
serve image per apply, one tag, ``TRAIN_IMAGE`` and the shipped pipeline on the deployed train image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipelines.visearch_pipeline import CONFIG_MAP
from tests.deploy.cluster import (
    APPLIES,
    COMPILED,
    IMAGES,
    K8S,
    Apply,
    applied,
    compiled_pipeline,
    containers,
    engine_env,
    fed_from_objects,
    key_of,
    library_containers,
    pods,
    references,
    resolved_env,
    service_for,
    setting_names,
    split_image,
    tasks,
    unset_has_a_meaning,
)
from visearch.settings import Settings


# --- tests ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(APPLIES))
def apply(request: pytest.FixtureRequest) -> Apply:
    return applied(request.param)


def test_every_referenced_object_and_key_exists_where_the_pod_runs(apply: Apply) -> None:
    missing = []
    for pod in pods(apply):
        assert pod.namespace in apply.namespaces(), f"{pod.where}: namespace {pod.namespace} is created by no one"
        for kind, name, key, optional in references(pod):
            data = apply.data(pod.namespace, kind, name)
            if (pod.namespace, kind, name) not in apply.objects:
                missing.append(f"{pod.where}: {kind} {pod.namespace}/{name}")  # optional or not: a pod needs it
            elif key is not None and data is not None and key not in data:
                env = next(
                    (v["name"] for c in containers(pod) for v in c.get("env", []) if key_of(v) == (name, key)), ""
                )
                if not (optional and unset_has_a_meaning(env)):
                    missing.append(f"{pod.where}: key {key!r} of {kind} {pod.namespace}/{name}")
        volumes = {v["name"] for v in pod.spec.get("volumes", [])}
        claims = {
            t["metadata"]["name"]
            for d in apply.docs
            if d["kind"] == "StatefulSet"
            for t in d["spec"].get("volumeClaimTemplates", [])
        }
        for container in containers(pod):
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes | claims:
                    missing.append(f"{pod.where}: volume {mount['name']} mounted but not declared")
    assert not missing, "\n".join(missing)


def cluster_settings(env: dict[str, str], step: bool, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the container builds them: from exactly ``env`` (a KFP pod also has KFP_POD_NAME)."""
    for name in list(os.environ):
        if name.upper() in setting_names() or name == "KFP_POD_NAME":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if step:
        monkeypatch.setenv("KFP_POD_NAME", "visearch-step")
    return Settings(_env_file=None)


def test_every_pod_that_runs_the_library_gets_a_cluster_ready_setup(
    apply: Apply, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from visearch.categories import load_registry
    from visearch.storage import parse_endpoint

    problems: list[str] = []
    qdrant, minio = engine_env(apply, "qdrant"), engine_env(apply, "minio")
    mlflow = engine_env(apply, "mlflow", "mlflow")
    for pod, container in library_containers(apply):
        where = f"{pod.where}/{container['name']}"
        env = resolved_env(apply, pod.namespace, container)
        given = fed_from_objects(apply, pod.namespace, container)
        problems += [
            f"{where}: {name} is no setting of visearch.settings.Settings"
            for name in sorted(given - set(setting_names()))
        ]
        with monkeypatch.context() as patch:
            settings = cluster_settings(env, pod.step, patch)
        if not settings.require_engines:
            problems.append(f"{where}: VISEARCH_REQUIRE_ENGINES is not true (an embedded engine would lose its data)")
        for setting, url in (
            ("QDRANT_URL", settings.qdrant_location),
            ("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
        ):
            parts = urlsplit(url or "")
            why = service_for(apply, pod.namespace, parts.hostname, parts.port or 80) if parts.hostname else "unset"
            if why:
                problems.append(f"{where}: {setting}={url}: {why}")
        if not settings.minio_host:
            problems.append(f"{where}: MINIO_HOST unset")
        else:
            endpoint, secure = parse_endpoint(settings.minio_host, settings.minio_secure)
            host, _, port = endpoint.partition(":")
            if why := service_for(apply, pod.namespace, host, int(port or 443 if secure else port or 80)):
                problems.append(f"{where}: MINIO_HOST={settings.minio_host}: {why}")
            if secure:  # the manifests' MinIO has no certificate: plain HTTP inside the cluster
                problems.append(f"{where}: TLS to MinIO ({settings.minio_host}, MINIO_SECURE) but it serves plain HTTP")
        # Each engine's credentials: the ones the engine itself was given.
        secret = lambda value: value.get_secret_value() if value else None  # noqa: E731
        for setting, ours, theirs in (
            ("QDRANT_API_KEY", secret(settings.qdrant_api_key), qdrant.get("QDRANT__SERVICE__API_KEY")),
            ("MINIO_ACCESS_KEY", secret(settings.minio_access_key), minio.get("MINIO_ROOT_USER")),
            ("MINIO_SECRET_KEY", secret(settings.minio_secret_key), minio.get("MINIO_ROOT_PASSWORD")),
            ("MLFLOW_TRACKING_USERNAME", settings.mlflow_tracking_username, mlflow.get("MLFLOW_AUTH_ADMIN_USERNAME")),
            (
                "MLFLOW_TRACKING_PASSWORD",
                secret(settings.mlflow_tracking_password),
                mlflow.get("MLFLOW_AUTH_ADMIN_PASSWORD"),
            ),
        ):
            if not theirs or ours != theirs:
                problems.append(f"{where}: {setting} is {'unset' if ours is None else 'not the engine’s'}")
        # The registry: mounted from a ConfigMap where VISEARCH_CATEGORIES points, and valid.
        path = settings.visearch_categories
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        volume = volumes.get(mounts.get(str(path.parent) if path else "", ""), {})
        registry = (
            (apply.data(pod.namespace, "ConfigMap", volume["configMap"]["name"]) or {}) if "configMap" in volume else {}
        )
        if path is None or path.name not in registry:
            problems.append(f"{where}: VISEARCH_CATEGORIES={path} is no file of a mounted ConfigMap")
        else:
            (tmp_path / path.name).write_text(registry[path.name])
            load_registry(tmp_path / path.name)  # raises on a registry the library refuses
        # The data home: absolute, and on a volume where the root filesystem is read-only.
        home = settings.visearch_home
        read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
        if not home.is_absolute():
            problems.append(f"{where}: VISEARCH_HOME={home} is relative (set it, or the image's ENV)")
        elif read_only and not any(home == Path(m) or Path(m) in home.parents for m in mounts):
            problems.append(f"{where}: VISEARCH_HOME={home} is on the read-only root filesystem")
    assert not problems, "\n".join(problems)


def test_the_pipeline_namespace_reads_the_same_registry_as_the_service() -> None:
    """kustomize reads no file outside a folder: k8s/pipeline-env ships a copy of the base's registry."""
    assert (K8S / "pipeline-env" / "categories.yaml").read_text() == (K8S / "base" / "categories.yaml").read_text()


def test_every_service_and_controller_finds_its_pods(apply: Apply) -> None:
    """Services select pods that exist and name their ports; StatefulSets, HPAs and PDBs name what exists."""
    workloads = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in apply.docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    for doc in apply.docs:
        ns, name = doc["metadata"].get("namespace", ""), doc["metadata"]["name"]
        if doc["kind"] in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"] if doc["kind"] == "Service" else doc["spec"]["selector"]["matchLabels"]
            chosen = [
                w
                for (wns, _), w in workloads.items()
                if wns == ns and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert chosen, f"{apply.name}: {doc['kind']} {ns}/{name} selects no pod"
            ports = {
                p["name"]
                for w in chosen
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in doc["spec"].get("ports", []):
                assert not isinstance(port["targetPort"], str) or port["targetPort"] in ports, f"{name}: {port}"
        elif doc["kind"] == "StatefulSet":
            assert (ns, "Service", doc["spec"]["serviceName"]) in apply.objects, f"{name}: serviceName"
        elif doc["kind"] == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            assert (ns, target["kind"], target["name"]) in apply.objects, f"{name}: scaleTargetRef"


# --- images --------------------------------------------------------------------------------------------
def test_images_are_one_build_and_the_pipeline_runs_on_it(apply: Apply) -> None:
    """One train and one serve image (same registry, same tag); TRAIN_IMAGE and the shipped pipeline name that train image."""
    used = {c["image"] for pod in pods(apply) if not pod.step for c in containers(pod)}
    ours = {image for image in used if split_image(image)[1] in IMAGES}
    for image in used - ours:  # the engines: pinned, never a moving tag
        assert split_image(image)[2] not in ("", "latest"), f"{apply.name}: {image} is not pinned"
    if not ours:
        return  # pipeline-env alone deploys no image
    assert {split_image(image)[1] for image in ours} == set(IMAGES), ours
    assert len({split_image(image)[::2] for image in ours}) == 1, (
        f"{apply.name}: train and serve differ in registry or tag: {ours}"
    )
    train = next(image for image in ours if split_image(image)[1] == "visearch-train")
    for (ns, kind, name), doc in apply.objects.items():
        if (kind, name) == ("ConfigMap", CONFIG_MAP) and "TRAIN_IMAGE" in doc["data"]:
            assert doc["data"]["TRAIN_IMAGE"] == train, f"{apply.name}: TRAIN_IMAGE in {ns}"
        if (kind, name) == ("ConfigMap", "visearch-pipeline"):
            spec, _ = compiled_pipeline(doc["data"]["visearch-pipeline.yaml"])
            steps = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
            assert steps == {train}, f"{apply.name}: the shipped pipeline runs {steps}, the apply deploys {train}"


def test_qdrant_server_is_within_one_minor_version_of_the_client() -> None:
    from importlib.metadata import version

    qdrant = next(c["image"] for pod in pods(applied("base")) for c in containers(pod) if "qdrant" in c["image"])
    server = [int(part) for part in re.findall(r"\d+", split_image(qdrant)[2])[:2]]
    client = [int(part) for part in version("qdrant-client").split(".")[:2]]
    assert server[0] == client[0] and abs(server[1] - client[1]) <= 1, (qdrant, client)


def test_each_overlay_ships_the_compiled_pipeline_for_its_image() -> None:
    """The overlays' copies are the compiled pipeline, on their own train image (else: python -m pipelines.visearch_pipeline)."""
    from pipelines.visearch_pipeline import overlay_copies

    compiled = COMPILED.read_text()
    default = Settings(_env_file=None).train_image
    assert {path.parts[-3] for path in overlay_copies()} == {"dev", "prod"}
    for path, image in overlay_copies().items():
        assert path.read_text() == compiled.replace(f"image: {default}\n", f"image: {image}\n"), f"{path} is stale"


# --- the compiled pipeline: retries, resume state, the run form ------------------------------------------
def test_every_step_is_retried_and_embed_and_train_resume_from_the_object_store(
    apply: Apply, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retried pod has a fresh filesystem: what embed and train resume from is in the object store.

    Their resume state (``EmbedNames.parts_prefix``, ``TrainingNames.checkpoint_key``) is kept in the
    store ``make_store`` opens, so their pods must reach the remote one, never the pod-local folder.
    """
    spec, _ = compiled_pipeline(COMPILED.read_text())
    for name, component in spec["components"].items():
        if "executorLabel" in component:
            policy = tasks(spec)[name].get("retryPolicy", {})
            assert policy.get("maxRetryCount", 0) >= 1, f"{name} is not retried"
    for pod in (p for p in pods(apply) if p.step and p.where.split()[-1].split("@")[0] in ("exec-embed", "exec-train")):
        with monkeypatch.context() as patch:
            settings = cluster_settings(resolved_env(apply, pod.namespace, pod.spec["containers"][0]), True, patch)
        assert settings.minio_host, f"{pod.where}: resume state would stay in the pod"


def test_every_training_parameter_is_a_run_parameter_with_a_description() -> None:
    """The dashboard's run form: each TrainParams field, described (kfp takes the pipeline docstring's Args)."""
    from visearch.train_params import TrainParams

    spec, _ = compiled_pipeline(COMPILED.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name, field in TrainParams.model_fields.items():
        assert name in parameters, f"{name} is no run parameter of the compiled pipeline"
        assert field.description and field.description in parameters[name].get("description", ""), name
        assert parameters[name]["isOptional"], f"{name}: the registry's value must stay the default"
    assert all(p.get("description", "").strip() for p in parameters.values())
