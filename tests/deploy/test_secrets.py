"""Credentials come only from the environment or Kubernetes Secrets, and no image bakes one in.

Every secret setting is a ``SecretStr``; `.env.example` leaves it blank, compose takes it from
`.env`, the ConfigMap never holds one, and no Dockerfile ``ENV``/``ARG`` names one.
"""

from __future__ import annotations

import re
import typing

import pytest
import yaml
from pydantic import SecretStr

from tests.helpers import ROOT
from visearch.settings import Settings

SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.I)


def secret_settings() -> list[str]:
    return [
        name.upper() for name, field in Settings.model_fields.items() if SecretStr in typing.get_args(field.annotation)
    ]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.train", "Dockerfile.serve"])
def test_images_bake_no_secrets(dockerfile: str) -> None:
    """No ENV/ARG names a credential (ARG values stay in the image history) and no .env is copied."""
    text = re.sub(r"\\\n", " ", (ROOT / dockerfile).read_text())  # join continuation lines
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=|\s|$)", rest)
            assert not [n for n in names if SECRET_NAME.search(n)], line
        if instruction.upper() in ("COPY", "ADD"):
            assert ".env" not in rest, line


def test_secret_settings_come_only_from_env_and_secrets() -> None:
    names = secret_settings()
    assert {"VISEARCH_API_KEY", "QDRANT_API_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"} <= set(names)
    example = dict(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.M))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service_env = compose["services"]["visearch"]["environment"]
    config = yaml.safe_load((ROOT / "k8s" / "base" / "config.yaml").read_text())
    docs = yaml.safe_load_all((ROOT / "k8s" / "base" / "secrets.yaml").read_text())
    placeholders = next(d for d in docs if d["metadata"]["name"] == "visearch-secrets")["stringData"]
    for name in names:
        assert example[name] == "", f"{name} must be blank in .env.example"
        if name in service_env:
            assert service_env[name].startswith("${" + name + ":"), f"{name} must come from .env, never a literal"
        assert name not in config.get("data", {}), f"{name} belongs in a Secret, not the ConfigMap"
    assert placeholders["VISEARCH_API_KEY"].startswith("CHANGE-ME")  # dev only; prod creates the real one
    assert service_env["VISEARCH_API_KEY"] == "${VISEARCH_API_KEY:-}"  # optional: admin stays off without it
