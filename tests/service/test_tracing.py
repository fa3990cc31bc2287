"""Tracing: off by default (BentoML's OpenTelemetry middleware costs 0.3-0.5 ms a request), on when configured.

The access log shows it: a traced request's line ends with its trace and span ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_until
from tests.service.server import running_service
from visearch.settings import Settings

pytestmark = pytest.mark.slow


def access_lines(log: Path, path: str) -> list[str]:
    """The server log's access-log lines of requests to ``path``."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return [line for line in text.splitlines() if f"path={path}," in line]


def test_requests_make_no_spans_by_default(client: httpx.Client, server_log: Path) -> None:
    assert client.get("/categories").status_code == 200
    wait_until(lambda: bool(access_lines(server_log, "/categories")), timeout=30)
    assert not [line for line in access_lines(server_log, "/categories") if "trace=" in line]


def test_tracing_turns_on_with_the_documented_override(indexed_home: Settings, tmp_path: Path) -> None:
    # docs/configuration.md: the override that turns tracing back on (here sampled, with no exporter).
    override = {"services": {"visearch": {"tracing": {"excluded_urls": None, "sample_rate": 1.0}}}}
    log = tmp_path / "server.log"
    with running_service(indexed_home, log, {"BENTOML_CONFIG_OVERRIDES": json.dumps(override)}) as (url, _):
        assert httpx.get(f"{url}/categories", timeout=30).status_code == 200
        wait_until(lambda: bool(access_lines(log, "/categories")), timeout=30)
    (line,) = access_lines(log, "/categories")
    assert "trace=" in line and "sampled=1" in line, line
