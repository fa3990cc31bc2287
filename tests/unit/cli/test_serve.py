"""`visearch serve`: the launch command runs bentoml on the installed service module, with SERVE_WORKERS workers."""

from __future__ import annotations

import importlib.util
import json

import pytest

from visearch.cli.serve import serve_command, serve_env
from visearch.settings import Settings


def test_serve_command_runs_bentoml_on_the_service_module() -> None:
    command = serve_command(port=3123, host="127.0.0.1")
    assert "serve" in command and "serving.service:Visearch" in command
    assert command[command.index("--port") + 1] == "3123"
    # The service is an installed package: bentoml imports it by name, from any working directory.
    assert importlib.util.find_spec("serving.service") is not None


def test_serve_workers_reach_bentoml_through_its_config_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_CONFIG_OVERRIDES", json.dumps({"services": {"visearch": {"threads": 4}}}))
    assert json.loads(serve_env(Settings(_env_file=None))["BENTOML_CONFIG_OVERRIDES"]) == {
        "services": {"visearch": {"threads": 4}}
    }  # unset: BentoML's (the service's) own worker count
    env = serve_env(Settings(_env_file=None, serve_workers=2))
    assert json.loads(env["BENTOML_CONFIG_OVERRIDES"]) == {"services": {"visearch": {"threads": 4, "workers": 2}}}
