"""`visearch serve`: the launch command runs bentoml on the installed service module."""

from __future__ import annotations

import importlib.util

from visearch.cli.serve import serve_command


def test_serve_command_runs_bentoml_on_the_service_module() -> None:
    command = serve_command(port=3123, host="127.0.0.1")
    assert "serve" in command and "serving.service:Visearch" in command
    assert command[command.index("--port") + 1] == "3123"
    # The service is an installed package: bentoml imports it by name, from any working directory.
    assert importlib.util.find_spec("serving.service") is not None
