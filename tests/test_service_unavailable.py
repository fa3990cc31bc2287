"""Engine unavailable: while another process holds the embedded index the service answers 503
with a message and is not ready; it recovers by itself once the index is free."""

from __future__ import annotations

import time

import httpx
import pytest
from qdrant_client import QdrantClient

from .conftest import TINY, make_home
from .servers import start_server, stop_server

pytestmark = pytest.mark.slow


def wait_for(check, timeout: float = 120) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def test_busy_index_gives_503_then_recovers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_home(tmp_path / "home")
    settings.qdrant_path.mkdir(parents=True)
    holder = QdrantClient(path=str(settings.qdrant_path))  # e.g. a CLI run or a pipeline upsert
    process, url = start_server(settings, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert wait_for(lambda: client.get("/livez").status_code == 200), (tmp_path / "server.log").read_text()
            assert client.get("/readyz").status_code == 503
            for response in (
                client.get("/categories"),
                client.post("/search", data={"category": TINY}, files={"image": ("x.png", b"\x89PNG")}),
                client.post("/search_by_id", json={"category": TINY, "point_id": "x"}),
            ):
                assert response.status_code == 503, response.text
                assert "in use by another process" in response.json()["error"]
            assert client.get("/ui/").status_code == 200  # the UI page itself needs only the registry

            holder.close()
            assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60)
            categories = {c["name"]: c for c in client.get("/categories").json()}
            assert categories[TINY]["indexed"] is False
            # A category whose index is not built yet: 404 with a message, not a 5xx.
            response = client.post("/search", data={"category": TINY}, files={"image": ("x.png", b"\x89PNG")})
            assert response.status_code in (400, 404)
            response = client.post("/search_by_id", json={"category": TINY, "point_id": "x"})
            assert response.status_code == 404 and "no index yet" in response.json()["error"]
    finally:
        holder.close()
        stop_server(process)
